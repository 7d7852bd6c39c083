# Finds the optional dependencies once and sets LIGHTRING_HAVE_<X>.

# --- CUDA ----------------------------------------------------------------------
set(LIGHTRING_HAVE_CUDA OFF)
if(LIGHTRING_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Default: a binary for the GPUs people have, unless the user chose architectures: sm_80
    # code (A100; L40 and other sm_8x run it) for the tf32 and mma families, sm_90a code for
    # H100 / H200 (the wgmma family). The runtime picks the family by compute capability
    # (kernels/cuda/family.h).
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
      set(CMAKE_CUDA_ARCHITECTURES "80;90a")
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(LIGHTRING_HAVE_CUDA ON)
    # Saved here: Torch's CMake config overwrites CMAKE_CUDA_ARCHITECTURES.
    set(LIGHTRING_CUDA_ARCHITECTURES ${CMAKE_CUDA_ARCHITECTURES})
  else()
    message(STATUS "lightring: nvcc not found: the CUDA backend is not built")
  endif()
endif()

# --- NCCL ----------------------------------------------------------------------
set(LIGHTRING_HAVE_NCCL OFF)
if(LIGHTRING_NCCL AND LIGHTRING_HAVE_CUDA)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include)
  # Link by SONAME libnccl.so.2 so that torch's pip copy and the system copy agree.
  find_library(NCCL_LIBRARY NAMES libnccl.so.2 nccl
               HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    add_library(lightring::nccl UNKNOWN IMPORTED)
    set_target_properties(lightring::nccl PROPERTIES IMPORTED_LOCATION ${NCCL_LIBRARY}
                                                     INTERFACE_INCLUDE_DIRECTORIES ${NCCL_INCLUDE_DIR})
    set(LIGHTRING_HAVE_NCCL ON)
  else()
    message(STATUS "lightring: NCCL not found: the NCCL communicator is not built")
  endif()
endif()

# --- MPI -----------------------------------------------------------------------
set(LIGHTRING_HAVE_MPI OFF)
if(LIGHTRING_MPI)
  find_package(MPI COMPONENTS C CXX QUIET)
  if(MPI_C_FOUND AND MPI_CXX_FOUND)
    set(LIGHTRING_HAVE_MPI ON)
  else()
    message(STATUS "lightring: MPI not found: the MPI communicator, launchers and MPI tests are not built")
  endif()
endif()

# --- OpenMP (CPU backend threads; optional) --------------------------------------
find_package(OpenMP QUIET COMPONENTS CXX)

# --- Boost.Program_options -------------------------------------------------------
set(LIGHTRING_HAVE_BOOST_PO OFF)
find_package(Boost QUIET COMPONENTS program_options)
if(Boost_PROGRAM_OPTIONS_FOUND)
  set(LIGHTRING_HAVE_BOOST_PO ON)
else()
  message(STATUS "lightring: Boost.Program_options not found: launch/ executables are not built")
endif()

# --- GTest ---------------------------------------------------------------------
set(LIGHTRING_HAVE_GTEST OFF)
if(LIGHTRING_TESTS)
  find_package(GTest QUIET)
  if(GTest_FOUND)
    set(LIGHTRING_HAVE_GTEST ON)
  else()
    message(STATUS "lightring: GTest not found: tests are not built")
  endif()
endif()

# --- Torch + Python ----------------------------------------------------------------
set(LIGHTRING_HAVE_TORCH OFF)
if(LIGHTRING_TORCH)
  find_package(Python COMPONENTS Interpreter Development QUIET)
  if(Python_FOUND AND NOT Torch_DIR)
    execute_process(COMMAND ${Python_EXECUTABLE} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
                    OUTPUT_VARIABLE _lr_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(_lr_torch_prefix)
      list(APPEND CMAKE_PREFIX_PATH ${_lr_torch_prefix})
    endif()
  endif()
  find_package(Torch QUIET)
  if(LIGHTRING_HAVE_CUDA)
    set(CMAKE_CUDA_ARCHITECTURES ${LIGHTRING_CUDA_ARCHITECTURES})
  endif()
  # No pybind11: the extension registers torch ops (torch/library.h) and a small
  # CPython-API module (csrc/module.cpp); Python_add_library needs only Python's
  # development files.
  if(TORCH_FOUND AND Python_FOUND)
    set(LIGHTRING_HAVE_TORCH ON)
  else()
    message(STATUS "lightring: Torch/Python development files not found: the Python extension is not built")
  endif()
endif()
