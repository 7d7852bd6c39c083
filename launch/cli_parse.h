// The strict command-line parse shared by the launchers (lightring-bench, lightring-train):
// Boost.Program_options with no positional arguments, so a stray word is an error rather than
// silently ignored; a parse error becomes lightring::Error naming the tool.
#pragma once

#include <boost/program_options.hpp>
#include <iostream>

#include "core/error.h"

namespace lightring::launch {

// Fills vm from argv against desc. Returns false when --help was given (desc printed when
// print_help, e.g. on rank 0 only); the caller then stops without running.
inline bool parse_command_line(const boost::program_options::options_description& desc, int argc,
                               char** argv, const char* tool, bool print_help,
                               boost::program_options::variables_map* vm) {
  namespace po = boost::program_options;
  try {
    po::store(po::command_line_parser(argc, argv)
                  .options(desc)
                  .positional(po::positional_options_description())
                  .run(),
              *vm);
    po::notify(*vm);
  } catch (const po::error& e) {
    LR_THROW(tool, ": ", e.what(), " (see --help)");
  }
  if (vm->count("help")) {
    if (print_help) std::cout << desc << "\n";
    return false;
  }
  return true;
}

}  // namespace lightring::launch
