// Bounded agreement between the ranks of lightring-bench (see bench_agree.h).
#include "launch/bench_agree.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <exception>
#include <mutex>
#include <sstream>

#include "core/error.h"

namespace lightring::launch {

namespace {

std::string join(const std::vector<int64_t>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
  return os.str();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream is(text);
  std::string line;
  while (std::getline(is, line)) out.push_back(line);
  return out;
}

}  // namespace

std::string canonical_options(const BenchOptions& o) {
  std::ostringstream os;
  const char* modes[] = {"run", "exchange-only", "find-max", "model"};
  os << "mode " << modes[static_cast<int>(o.mode)] << "\n";
  os << "--backend " << kernels::device_name(o.backend) << "\n";
  os << "--batch " << o.batch << "\n--heads " << o.heads << "\n--dim " << o.dim << "\n";
  os << "--vdim " << o.vdim << "\n--dtype " << kernels::dtype_name(o.dtype) << "\n";
  os << "--decay " << (o.decay ? "on" : "off") << "\n--states " << o.states << "\n";
  os << "--schedule ";
  for (size_t i = 0; i < o.schedules.size(); ++i)
    os << (i ? "," : "") << parallel::schedule_name(o.schedules[i]);
  os << "\n-b " << o.min_len << "\n-e " << o.max_len << "\n-f " << o.factor << "\n";
  os << "--local-len " << join(o.local_lens) << "\n";
  os << "--link " << o.link.latency_us << "," << o.link.bandwidth_Bpus << "," << o.link.combine_Bpus
     << "\n";
  os << "--inter-link " << o.link.inter_latency_us << "," << o.link.inter_bandwidth_Bpus << "\n";
  if (o.measure_nodes) {
    os << "--ranks-per-node measured\n";
  } else {
    os << "--ranks-per-node " << o.link.ranks_per_node << "\n";
  }
  os << "-w " << o.warmup << "\n-n " << o.iters << "\n--check " << o.check << "\n";
  os << "--no-baseline " << !o.baseline << "\n--no-ceilings " << !o.ceilings << "\n";
  os << "--seed " << o.seed << "\n--timeout " << o.timeout_s << "\n";
  os << "--msg-bytes " << join(o.msg_bytes) << "\n--refine " << o.refine << "\n";
  os << "--max-seconds " << o.max_seconds << "\n";
  os << "--docs " << o.docs.text << "\n--docs-seed " << o.docs_seed << "\n";
  return os.str();
}

void agree_on_options(comm::MpiCommunicator& world, const std::string& options,
                      const std::string& error) {
  const std::string mine = (error.empty() ? "ok\n" : "error\n") + (error.empty() ? options : error);
  const std::vector<std::string> all = comm::all_gather_strings(world, mine);
  const int P = world.size();
  // A rank whose own command line was rejected reports its own error; the others name it.
  if (!error.empty()) throw Error(error);
  std::ostringstream err;
  for (int g = 0; g < P; ++g) {
    if (all[g].rfind("error\n", 0) == 0)
      err << "\n  rank " << g << " rejected its command line: " << all[g].substr(6);
  }
  if (err.tellp() == 0) {
    std::vector<std::vector<std::string>> table(P);
    for (int g = 0; g < P; ++g) table[g] = lines(all[g].substr(3));
    for (size_t i = 0; i < table[0].size(); ++i) {
      bool same = true;
      for (int g = 1; g < P; ++g) same = same && i < table[g].size() && table[g][i] == table[0][i];
      if (same) continue;
      const std::string name = table[0][i].substr(0, table[0][i].find(' '));
      err << "\n  " << name << " differs:";
      for (int g = 0; g < P; ++g) {
        const std::string& line = i < table[g].size() ? table[g][i] : std::string("? ?");
        err << " rank " << g << " has '" << line.substr(line.find(' ') + 1) << "';";
      }
    }
  }
  if (err.tellp() != 0)
    LR_THROW(
        "lightring-bench: the ranks' command lines do not agree (every rank must run with the "
        "same options; nothing was run):",
        err.str());
}

void agreed(comm::MpiCommunicator& world, const char* what, const std::function<void()>& phase) {
  std::string error;
  try {
    phase();
  } catch (const CommError& e) {
    throw CommError(std::string(what) + ": " + e.what());
  } catch (const std::exception& e) {
    error = e.what();
    if (error.empty()) error = "unknown error";
  }
  const int64_t mine = error.empty() ? INT_MAX : world.rank();
  std::vector<int64_t> all(world.size());
  world.all_gather_host(&mine, all.data(), 1);
  const int64_t first = *std::min_element(all.begin(), all.end());
  if (first == INT_MAX) return;
  if (!error.empty()) LR_THROW(what, " failed: ", error);
  LR_THROW(what, " failed on rank ", first, " (see its message); stopping on every rank");
}

namespace {
// Read by the progress ticker's thread (bench_cli.h) while the main thread sets it.
std::mutex g_activity_mutex;
std::string g_activity = "starting";
}  // namespace

void set_activity(std::string what) {
  std::lock_guard<std::mutex> lock(g_activity_mutex);
  g_activity = std::move(what);
}

std::string activity() {
  std::lock_guard<std::mutex> lock(g_activity_mutex);
  return g_activity;
}

std::vector<double> max_over_ranks(comm::MpiCommunicator& world, const std::vector<double>& x) {
  const size_t n = x.size();
  std::vector<double> all(n * world.size()), out(x);
  world.all_gather_host(x.data(), all.data(), n);
  for (int g = 0; g < world.size(); ++g)
    for (size_t i = 0; i < n; ++i) out[i] = std::max(out[i], all[g * n + i]);
  return out;
}

bool all_ranks(comm::MpiCommunicator& world, bool ok) {
  const int64_t mine = ok ? 1 : 0;
  std::vector<int64_t> all(world.size());
  world.all_gather_host(&mine, all.data(), 1);
  return std::all_of(all.begin(), all.end(), [](int64_t v) { return v == 1; });
}

}  // namespace lightring::launch
