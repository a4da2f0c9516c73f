// `raftkv member list|add|promote|remove`: the operator's side of the membership API
// (SPEC §8). Each command is one HTTP/1.1 request to the node named by --endpoint (any node:
// followers forward membership requests to the leader, so the command needs no redirects):
//
//   member list    --endpoint URL [--token-file F] [--json]    GET    /v1/members
//   member add     --endpoint URL --id N --peer H:P
//                  [--memcached H:P] [--cs733 H:P] [--http H:P] POST   /v1/members
//   member promote --endpoint URL --id N                        POST   /v1/members/N/promote
//   member remove  --endpoint URL --id N                        DELETE /v1/members/N
//
// Every command takes --token-file: its first line (trailing whitespace trimmed, the rule the
// server applies to [http] admin_token_file) is sent as `Authorization: Bearer <token>`.
// URL is http://host[:port] or, for a door that serves HTTPS ([http] tls_cert),
// https://host[:port]: TLS 1.2 or later, the node's certificate checked against --ca-file
// (a PEM file; default: the system's trusted CAs) and against the URL's host.
//
// Exit codes follow SPEC §1.1: 2 when the command line is wrong (an unknown command, a
// missing or malformed option, an endpoint that is not http(s)://host[:port], an id that is
// not 1..4294967295 in decimal, an unreadable token or CA file, --ca-file with http://) —
// nothing was sent; 1 when the request failed at run time (cannot connect, a TLS handshake
// or certificate check that failed, no answer within 30 s, a non-2xx status) — the message
// says which and, for a status, quotes the server's error; 0 otherwise.
//
// Kept apart from main.cc so that main only wires subcommands, and so that the Beast and
// JSON headers stay out of everything but member_cli.cc.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace app {

class member_cli {
 public:
  // Adds `member` and its four subcommands to `parent`. CLI11 keeps pointers to this
  // object's option fields, so it must outlive parent.parse() and is neither copied nor moved.
  explicit member_cli(CLI::App& parent);
  member_cli(const member_cli&) = delete;
  member_cli& operator=(const member_cli&) = delete;

  // True when the parsed command line is `raftkv member ...`.
  bool chosen() const;

  // Sends the chosen request and prints the outcome; returns the process exit code.
  int run() const;

 private:
  CLI::App* member_ = nullptr;
  CLI::App* list_ = nullptr;
  CLI::App* add_ = nullptr;
  CLI::App* promote_ = nullptr;
  CLI::App* remove_ = nullptr;

  std::string endpoint_;    // http://host[:port], validated while parsing
  std::string token_file_;  // empty: send no Authorization header
  std::string ca_file_;     // https:// only; empty: the system's trusted CAs
  bool json_ = false;       // list: print the reply body as is
  std::string id_;          // decimal 1..4294967295, validated while parsing
  std::string peer_;        // add: required; the doors below are optional (empty: omitted)
  std::string memcached_;
  std::string cs733_;
  std::string http_;
};

}  // namespace app
