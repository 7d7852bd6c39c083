// NCCL bootstrap over MPI: rank 0 creates the unique id, MPI broadcasts it
// (llm.c zero.cuh does the same), every rank joins on its device. The
// communicator's host-side collectives (the shape agreement of every SP pass)
// then run over a duplicate of the MPI communicator (set_host_channel) unless
// LIGHTRING_NCCL_HOST_AGREE=nccl.
#include <cstdlib>
#include <cstring>

#include "comm/mpi_communicator.h"
#include "comm/nccl_communicator.h"
#include "core/error.h"

namespace lightring::comm {

namespace {

bool host_agree_over_mpi() {
  const char* env = std::getenv("LIGHTRING_NCCL_HOST_AGREE");
  if (!env || !*env || std::strcmp(env, "mpi") == 0) return true;
  LR_CHECK(std::strcmp(env, "nccl") == 0,
           "LIGHTRING_NCCL_HOST_AGREE must be unset, 'mpi' or 'nccl' (got '", env, "')");
  return false;
}

}  // namespace

std::unique_ptr<NcclCommunicator> nccl_from_mpi(MpiCommunicator& mpi, int device,
                                                const CommOptions& options) {
  const bool over_mpi = host_agree_over_mpi();
  NcclUniqueId id{};
  if (mpi.rank() == 0) id = nccl_unique_id();
  mpi.broadcast_bytes(id.data(), id.size(), 0);
  auto nccl = std::make_unique<NcclCommunicator>(id, mpi.rank(), mpi.size(), device, options);
  if (over_mpi) nccl->set_host_channel(std::make_unique<MpiCommunicator>(mpi.handle(), options));
  return nccl;
}

}  // namespace lightring::comm
