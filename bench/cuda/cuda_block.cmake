# The CUDA backend's build (to go into the top-level CMakeLists.txt before `add_subdirectory(tests)`, with
# OSPREY_ROOT read as ${CMAKE_CURRENT_SOURCE_DIR}). CI builds it with -DOSPREY_CUDA=ON on a machine without a
# GPU; its GPU tests then skip.
if(NOT DEFINED OSPREY_ROOT)
  set(OSPREY_ROOT ${CMAKE_CURRENT_SOURCE_DIR})
endif()
if(OSPREY_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90a)  # H100/H200 (sm_90a: wgmma, setmaxnreg)
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  # C++20 for nvcc by flag: CMake 3.25 does not know nvcc 13's CUDA20 dialect flag.
  file(GLOB cuda_srcs CONFIGURE_DEPENDS ${OSPREY_ROOT}/src/backend/cuda/*.cu ${OSPREY_ROOT}/src/backend/cuda/*.cpp)
  add_library(osprey_backend_cuda STATIC ${cuda_srcs})
  target_include_directories(osprey_backend_cuda PUBLIC ${OSPREY_ROOT}/src)
  target_link_libraries(osprey_backend_cuda PUBLIC osprey_backend osprey_core CUDA::cudart_static CUDA::cublas
                        CUDA::cublasLt)
  target_compile_definitions(osprey_backend_cuda PUBLIC OSPREY_WITH_CUDA)
  target_compile_options(osprey_backend_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers>
    $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter --expt-relaxed-constexpr>)
  set_target_properties(osprey_backend_cuda PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
                        POSITION_INDEPENDENT_CODE ON)
endif()
