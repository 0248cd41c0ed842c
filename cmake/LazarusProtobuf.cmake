# lazarus_protobuf_library(TARGET PROTO IMPORT_DIR): a static library of the C++ code that
# protoc generates for PROTO, with headers at <binary dir>/<PROTO relative to IMPORT_DIR>.
# (CMake 3.25's protobuf_generate derives output paths from the current source folder,
# which does not match where protoc writes for an import root elsewhere.)
function(lazarus_protobuf_library target proto import_dir)
  file(RELATIVE_PATH rel ${import_dir} ${proto})
  string(REGEX REPLACE "\\.proto$" "" stem ${rel})
  set(out ${PROJECT_BINARY_DIR}/gen)
  add_custom_command(
    OUTPUT ${out}/${stem}.pb.cc ${out}/${stem}.pb.h
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out}
    COMMAND protobuf::protoc --cpp_out=${out} -I ${import_dir} ${proto}
    DEPENDS ${proto} protobuf::protoc
    COMMENT "protoc ${rel}"
    VERBATIM)
  add_library(${target} STATIC ${out}/${stem}.pb.cc)
  target_include_directories(${target} PUBLIC ${out})
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf)
endfunction()
