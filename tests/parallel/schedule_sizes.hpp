// The schedule sizes the tests sweep: every kind, pp 1..8 and a spread of chunk counts (odd,
// even, at and above the minimum), with the validity rule written out independently of
// make_schedule so that a wrongly rejected size fails a test instead of being skipped.
#pragma once

#include <vector>

#include "parallel/schedule.hpp"

namespace testing {

struct Size {
  parallel::ScheduleKind kind;
  int pp, chunks;
  bool ep_overlap = false;  // the expert-parallel overlap form (sequential, dualpipe, dualpipev)
};

inline bool valid_size(parallel::ScheduleKind kind, int pp, int chunks) {
  using K = parallel::ScheduleKind;
  if (pp < 1 || chunks < 1) return false;
  switch (kind) {
    case K::sequential:
      return pp == 1;
    case K::one_f_one_b:
      return chunks >= pp;
    case K::dualpipe:
      return pp % 2 == 0 && chunks % 2 == 0 && chunks >= 2 * pp;
    case K::dualpipev:
      return chunks >= 2 * pp;
  }
  return false;
}

inline const std::vector<parallel::ScheduleKind>& all_kinds() {
  using K = parallel::ScheduleKind;
  static const std::vector<K> kinds{K::sequential, K::one_f_one_b, K::dualpipe, K::dualpipev};
  return kinds;
}

inline const std::vector<int>& chunk_counts() {
  static const std::vector<int> counts{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 16, 17, 20, 24, 32};
  return counts;
}

// Every valid (kind, pp, chunks) of the sweep, and those of every kind but 1f1b again with
// ep_overlap.
inline std::vector<Size> valid_sizes() {
  std::vector<Size> sizes;
  for (bool ep_overlap : {false, true})
    for (auto kind : all_kinds())
      for (int pp = 1; pp <= 8; ++pp)
        for (int chunks : chunk_counts())
          if (valid_size(kind, pp, chunks) &&
              !(ep_overlap && kind == parallel::ScheduleKind::one_f_one_b))
            sizes.push_back({kind, pp, chunks, ep_overlap});
  return sizes;
}

inline std::vector<parallel::Schedule> schedules_of(const Size& z) {
  return parallel::make_schedules(z.kind, z.pp, z.chunks, z.ep_overlap);
}

}  // namespace testing
