// GoogleTest helper shared by the C++ suites: a call must throw lightring::Error with a message
// that contains a given text.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "core/error.h"

namespace lightring::test {

// Runs fn; a failure unless it throws lightring::Error whose message contains `needle`.
inline void expect_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message was: " << e.what() << "\nexpected to contain: " << needle;
    return;
  }
  ADD_FAILURE() << "no lightring::Error thrown; expected one containing: " << needle;
}

}  // namespace lightring::test
