# Install and export: `cmake --install <build> --prefix P` puts
#   P/lib/liblightring_{core,kernels,comm,parallel}.a
#   P/include/lightring/{core,kernels,comm,parallel}/*.h   (the public headers)
#   P/lib/cmake/lightring/lightring{Config,ConfigVersion,Targets}.cmake
# so that a C++ user writes
#   find_package(lightring REQUIRED)
#   target_link_libraries(app PRIVATE lightring::lightring)
# lightring::lightring pulls every component (lightring::core, ::kernels, ::comm,
# ::parallel) and, through them, MPI::MPI_CXX, CUDA::cudart and NCCL where this
# build has them; lightringConfig.cmake finds those again (find_dependency).
include(CMakePackageConfigHelpers)

# The whole C++ library; in-tree code links the components it uses instead.
add_library(lightring INTERFACE)
target_link_libraries(lightring INTERFACE lightring_parallel lightring_comm lightring_kernels
                                          lightring_core)

set(LIGHTRING_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/lightring)

install(TARGETS lightring_core lightring_kernels lightring_comm lightring_parallel lightring
        EXPORT lightringTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${LIGHTRING_INSTALL_INCLUDEDIR})

# Public headers: what a caller of the four libraries includes, and what those include.
# Backend internals (kernels/cpu, kernels/cuda, comm/ipc_*, parallel/exchange.h) stay out.
set(_lr_headers
  core/error.h core/dtype.h
  kernels/attention.h kernels/documents.h kernels/state_ops.h
  comm/communicator.h comm/layout.h
  parallel/sequence_parallel.h parallel/agreement.h)
if(LIGHTRING_HAVE_CUDA)
  list(APPEND _lr_headers core/cuda_check.h)
endif()
if(LIGHTRING_HAVE_MPI)
  list(APPEND _lr_headers comm/mpi_communicator.h)
endif()
if(LIGHTRING_HAVE_NCCL)
  list(APPEND _lr_headers comm/nccl_communicator.h)
endif()
foreach(h ${_lr_headers})
  get_filename_component(_lr_dir ${h} DIRECTORY)
  install(FILES ${PROJECT_SOURCE_DIR}/${h} DESTINATION ${LIGHTRING_INSTALL_INCLUDEDIR}/${_lr_dir})
endforeach()

install(EXPORT lightringTargets NAMESPACE lightring:: DESTINATION ${LIGHTRING_CMAKEDIR})

if(LIGHTRING_HAVE_NCCL)
  get_filename_component(_lr_nccl_libdir ${NCCL_LIBRARY} DIRECTORY)
endif()
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/lightringConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/lightringConfig.cmake
                              INSTALL_DESTINATION ${LIGHTRING_CMAKEDIR})
# 0.x: a minor version may change the API, so only the same major.minor is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/lightringConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/lightringConfig.cmake
              ${PROJECT_BINARY_DIR}/lightringConfigVersion.cmake
        DESTINATION ${LIGHTRING_CMAKEDIR})
