// The admin status page served at GET /: one self-contained HTML document (inline CSS and
// JavaScript, no external assets, works offline) that polls /v1/status of this node and of
// every member it lists, and shows the cluster live.
#pragma once

#include <string_view>

namespace net {

std::string_view status_page_html();

}  // namespace net
