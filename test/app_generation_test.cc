#define BOOST_TEST_MODULE app_generation
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <variant>

#include "app/generation.h"
#include "test/support/temp_dir.h"

namespace gen = app::generation;

namespace {

struct temp_dir : test_support::temp_dir {
  temp_dir() : test_support::temp_dir("raftkv-generation-") {}
};

using test_support::read_all;

void write_all(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

gen::loaded expect_loaded(const std::variant<gen::loaded, std::string>& r) {
  const auto* error = std::get_if<std::string>(&r);
  BOOST_REQUIRE_MESSAGE(error == nullptr, "expected a generation, got: " << (error ? *error : ""));
  return std::get<gen::loaded>(r);
}

std::string expect_error(const std::variant<gen::loaded, std::string>& r) {
  BOOST_REQUIRE(std::holds_alternative<std::string>(r));
  return std::get<std::string>(r);
}

}  // namespace

BOOST_AUTO_TEST_CASE(an_empty_data_dir_gets_a_new_generation_once) {
  temp_dir t;
  const auto dir = t.path / "node1";  // created if missing
  const auto first = expect_loaded(gen::load_or_create(dir, /*has_raft_state=*/false));
  BOOST_TEST(first.value != 0u);
  BOOST_TEST(first.created);
  BOOST_TEST(first.fresh);
  BOOST_TEST(read_all(dir / "generation") == gen::format(first.value));
  BOOST_TEST(read_all(dir / "generation").size() == 17u);
  BOOST_TEST(!std::filesystem::exists(dir / "generation.tmp"));

  // The next start (with or without Raft state by then) keeps it and is not fresh.
  for (bool state : {false, true}) {
    const auto again = expect_loaded(gen::load_or_create(dir, state));
    BOOST_TEST(again.value == first.value);
    BOOST_TEST(!again.created);
    BOOST_TEST(!again.fresh);
  }

  // Another empty data dir draws another generation.
  const auto other = expect_loaded(gen::load_or_create(t.path / "node1-wiped", false));
  BOOST_TEST(other.value != first.value);
  BOOST_TEST(other.fresh);
}

BOOST_AUTO_TEST_CASE(a_data_dir_with_raft_state_but_no_generation_gets_one_and_is_known) {
  // Made by a version without the guard: the node is not an amnesiac.
  temp_dir t;
  const auto g = expect_loaded(gen::load_or_create(t.path, /*has_raft_state=*/true));
  BOOST_TEST(g.created);
  BOOST_TEST(!g.fresh);
  BOOST_TEST(gen::parse(read_all(t.path / "generation")) == g.value);
}

BOOST_AUTO_TEST_CASE(a_malformed_generation_file_is_an_error_naming_it) {
  temp_dir t;
  for (const std::string& bad :
       {std::string(""), std::string("0000000000000000\n"), std::string("xyz\n"),
        std::string("0123456789ABCDEF\n"), std::string("0123456789abcdef0\n")}) {
    write_all(t.path / "generation", bad);
    const auto err = expect_error(gen::load_or_create(t.path, false));
    BOOST_TEST(err.find((t.path / "generation").string()) != std::string::npos);
    BOOST_TEST(read_all(t.path / "generation") == bad);  // never overwritten
  }
}

BOOST_AUTO_TEST_CASE(format_and_parse_round_trip) {
  for (std::uint64_t v :
       {std::uint64_t{1}, std::uint64_t{0x0123456789abcdefull}, ~std::uint64_t{0}}) {
    BOOST_TEST(gen::parse(gen::format(v)) == v);
  }
  BOOST_TEST(gen::format(0x0123456789abcdefull) == "0123456789abcdef\n");
}

BOOST_AUTO_TEST_CASE(the_peer_record_is_saved_atomically_and_read_back) {
  temp_dir t;
  // No file: an empty record.
  const auto none = gen::load_peers(t.path);
  BOOST_TEST_REQUIRE(std::holds_alternative<gen::peer_record>(none));
  BOOST_TEST(std::get<gen::peer_record>(none).empty());

  gen::peer_record r{{2, 0x2222}, {3, 0xfedcba9876543210ull}};
  BOOST_TEST(gen::save_peers(t.path, r).empty());
  BOOST_TEST(read_all(t.path / "peer_generations") == "2 0000000000002222\n3 fedcba9876543210\n");
  BOOST_TEST(!std::filesystem::exists(t.path / "peer_generations.tmp"));
  const auto back = gen::load_peers(t.path);
  BOOST_TEST_REQUIRE(std::holds_alternative<gen::peer_record>(back));
  BOOST_TEST((std::get<gen::peer_record>(back) == r));

  r[4] = 0x44;
  BOOST_TEST(gen::save_peers(t.path, r).empty());
  BOOST_TEST((std::get<gen::peer_record>(gen::load_peers(t.path)) == r));
}

BOOST_AUTO_TEST_CASE(a_malformed_peer_record_is_refused) {
  for (const std::string& bad :
       {std::string("2 0000000000002222"),                        // no newline
        std::string("2  0000000000002222\n"),                     // two spaces
        std::string("0 0000000000002222\n"),                      // id 0
        std::string("2 0000000000000000\n"),                      // generation 0
        std::string("x 0000000000002222\n"),                      // not a number
        std::string("2 0000000000002222\n2 0000000000003333\n"),  // twice
        std::string("99999999999999999999 0000000000002222\n"),   // overflow
        std::string(" 0000000000002222\n")}) {
    BOOST_TEST(!gen::parse_peers(bad).has_value(), bad);
  }
  BOOST_TEST(gen::parse_peers("").has_value());
  temp_dir t;
  write_all(t.path / "peer_generations", "garbage\n");
  const auto r = gen::load_peers(t.path);
  BOOST_TEST_REQUIRE(std::holds_alternative<std::string>(r));
  BOOST_TEST(std::get<std::string>(r).find("peer_generations") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(the_refused_mark_is_kept_in_the_data_dir) {
  temp_dir t;
  BOOST_TEST(!gen::refused_mark(t.path).has_value());
  BOOST_TEST(gen::mark_refused(t.path, "node 3: lost its data dir").empty());
  const auto mark = gen::refused_mark(t.path);
  BOOST_TEST_REQUIRE(mark.has_value());
  BOOST_TEST(*mark == "node 3: lost its data dir");
}
