// raftkv: a Raft-replicated key-value server.
//
//   raftkv serve --config FILE          run one node (foreground; logs to stderr)
//   raftkv check-config --config FILE   validate, print the effective config, exit 0 or 2
//   raftkv member list    --endpoint URL [--token-file F] [--json]
//   raftkv member add     --endpoint URL --id N --peer H:P [--memcached H:P] [--cs733 H:P]
//                         [--http H:P] [--token-file F]
//   raftkv member promote --endpoint URL --id N [--token-file F]
//   raftkv member remove  --endpoint URL --id N [--token-file F]
//                                       membership changes over HTTP (app/member_cli.h)
//   raftkv restore --config FILE --snapshot PATH | --check --snapshot PATH
//                                       a new cluster's node from a backup (app/restore.h)
//   raftkv --version | --help
//
// Exit codes: 0 clean shutdown (member: success), 1 fatal runtime error (member: the request
// failed), 2 bad command line or config.
#include <CLI/CLI.hpp>

#include <iostream>
#include <variant>

#include "app/config.h"
#include "app/huge_page_heap.h"
#include "app/member_cli.h"
#include "app/restore.h"
#include "app/server.h"

namespace {

constexpr int exit_bad_usage = 2;

int check_config(const std::string& file) {
  auto loaded = app::load_config(file);
  if (auto* error = std::get_if<app::config_error>(&loaded)) {
    std::cerr << "raftkv: " << error->message << "\n";
    return exit_bad_usage;
  }
  // The certificates too, as `serve` and a reload would load them: so that new files can be
  // checked before the SIGHUP that takes them.
  if (auto why = app::check_tls(std::get<app::config>(loaded))) {
    std::cerr << "raftkv: " << *why << "\n";
    return exit_bad_usage;
  }
  std::cout << app::render_config(std::get<app::config>(loaded));
  return 0;
}

int serve(const std::string& file) {
  auto loaded = app::load_config(file);
  if (auto* error = std::get_if<app::config_error>(&loaded)) {
    std::cerr << "raftkv: " << error->message << "\n";
    return exit_bad_usage;
  }
  return app::run_server(std::get<app::config>(loaded));
}

}  // namespace

int main(int argc, char** argv) {
  app::use_huge_page_heap();  // before the store allocates anything large
  CLI::App cli{"raftkv: a Raft-replicated key-value server (memcached, CS733 and HTTP doors)"};
  cli.require_subcommand(1);
  cli.set_version_flag("--version", std::string("raftkv ") + RAFTKV_VERSION);

  std::string config_file;
  auto* serve_cmd = cli.add_subcommand("serve", "run one node in the foreground");
  serve_cmd->add_option("--config", config_file, "TOML config file")->required();
  auto* check_cmd =
      cli.add_subcommand("check-config", "validate a config file and print the effective config");
  check_cmd->add_option("--config", config_file, "TOML config file")->required();
  app::member_cli member_cmd(cli);  // CLI11 fills its fields: not const
  app::restore_cli restore_cmd(cli);

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = cli.exit(e);  // prints help/version or the error
    return code == 0 ? 0 : exit_bad_usage;
  }
  if (*serve_cmd) return serve(config_file);
  if (*check_cmd) return check_config(config_file);
  if (member_cmd.chosen()) return member_cmd.run();
  if (restore_cmd.chosen()) return restore_cmd.run();
  return exit_bad_usage;
}
