// --docs of lightring-bench: packed documents in the timed rows (docs/algorithm.md §5,
// parallel/sequence_parallel.h). A spec draws document lengths with --docs-seed until the
// stream of a row (its global length T) is covered; the last document is cut to fit:
//
//   fixed:L              every document L tokens
//   uniform:A..B         lengths uniform on the integers [A, B]
//   lognormal:MEAN[:S]   lengths round(exp(μ + S·z)), z standard normal, μ = ln(MEAN) − S²/2
//                        (so the mean length is MEAN before rounding); S defaults to 1
//
// Every length is at least 1. The draws use only 64-bit integer arithmetic of a fixed
// generator (splitmix64 of testing/counter_hash.h), so every rank, build and machine gets the
// same offsets from the same seed: each rank computes the global cu_seqlens of the row and takes
// its own kernels::local_documents from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/documents.h"
#include "launch/bench_shard.h"

namespace lightring::launch {

struct BenchOptions;

struct DocsSpec {
  enum class Kind { kNone, kFixed, kUniform, kLognormal };
  Kind kind = Kind::kNone;
  int64_t len = 0;             // fixed:L
  int64_t lo = 0, hi = 0;      // uniform:A..B
  double mean = 0, sigma = 1;  // lognormal:MEAN[:SIGMA]
  std::string text;            // the spec as given; "" when --docs is off

  bool enabled() const { return kind != Kind::kNone; }
};

// Parses a --docs spec; "" is off. Throws lightring::Error naming --docs and the forms above.
DocsSpec parse_docs_spec(const std::string& text);

// The global document offsets 0 = cu[0] < … < cu[num_docs] = T of a row of T tokens.
std::vector<int64_t> document_offsets(const DocsSpec& spec, int64_t T, uint64_t seed);

// Values of the per-document states of --states with --docs: entry j of document d of the state
// array `which` (0: initial states S0, 1: final-state gradients G), [N_docs, H, D, E] fp32, for
// documents first .. first + count − 1.
std::vector<float> document_states(const BenchOptions& opt, int which, int64_t first,
                                   int64_t count);

// Gives `shard` (of rank `rank`, first token `start`) its documents of the row's offsets `cu`:
// the local pieces, and with opt.states their initial states and final-state gradients and room
// for the per-document final states and initial-state gradients. Without documents a no-op.
void attach_documents(const BenchOptions& opt, const std::vector<int64_t>& cu, int64_t start,
                      Shard& shard);

}  // namespace lightring::launch
