// instseg::Error: the one exception type for user-facing problems (missing file, wrong model,
// unreadable image). Its message is one line meant for the person running the program.
#pragma once

#include <stdexcept>
#include <string>

namespace instseg {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace instseg
