# hacoord_add_tests(LABEL <unit|sim|integration|system> LIBS ...): every *_test.cc in the calling
# directory becomes one gtest binary and one ctest entry carrying that label.
function(hacoord_add_tests)
  cmake_parse_arguments(T "" "LABEL;TIMEOUT" "LIBS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 900)
  endif()
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc)
  foreach(source ${sources})
    get_filename_component(name ${source} NAME_WE)
    add_executable(${name} ${source})
    target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
    target_compile_definitions(${name} PRIVATE
      HACOORD_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
      HACOORD_BINARY="$<TARGET_FILE:hacoord>"
      HACOORD_TEST_NODE="$<TARGET_FILE:hacoord_test_node>")
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABEL}" TIMEOUT ${T_TIMEOUT})
    if(HACOORD_ASAN)
      set_tests_properties(${name} PROPERTIES
        ENVIRONMENT "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp")
    elseif(HACOORD_TSAN)
      set_tests_properties(${name} PROPERTIES
        ENVIRONMENT "TSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/tsan.supp")
    endif()
  endforeach()
endfunction()
