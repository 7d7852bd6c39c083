// NCCL bootstrap over MPI: rank 0 creates the unique id, MPI broadcasts it
// (llm.c zero.cuh does the same), every rank joins on its device.
#include "comm/mpi_communicator.h"
#include "comm/nccl_communicator.h"

namespace lightring::comm {

std::unique_ptr<NcclCommunicator> nccl_from_mpi(MpiCommunicator& mpi, int device,
                                                const CommOptions& options) {
  NcclUniqueId id{};
  if (mpi.rank() == 0) id = nccl_unique_id();
  mpi.broadcast_bytes(id.data(), id.size(), 0);
  return std::make_unique<NcclCommunicator>(id, mpi.rank(), mpi.size(), device, options);
}

}  // namespace lightring::comm
