# cmake -DMP_TRUST_BOUNDARY_MODULE=... -DWORK_DIR=... [-DGENERATOR=...] -P check.cmake
# Configures the project next to this file twice: with the rule broken, configure must fail
# with a message naming the whole path of targets; with the rule kept, it must succeed (so
# that the first run fails for the right reason, not for any failure).
foreach(var MP_TRUST_BOUNDARY_MODULE WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check.cmake: pass -D${var}=...")
  endif()
endforeach()
if(NOT DEFINED GENERATOR)
  set(GENERATOR Ninja)
endif()
set(expected "trust boundary: api reaches the privileged target mp::priv (priv): api -> core -> mp::priv (priv)")

function(configure_case name break_rule out_rc out_text)
  file(REMOVE_RECURSE ${WORK_DIR}/${name})
  execute_process(
    COMMAND ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR} -B ${WORK_DIR}/${name} -G ${GENERATOR}
            -DMP_TRUST_BOUNDARY_MODULE=${MP_TRUST_BOUNDARY_MODULE} -DBREAK_RULE=${break_rule}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${out_rc} "${rc}" PARENT_SCOPE)
  set(${out_text} "${out}${err}" PARENT_SCOPE)
endfunction()

configure_case(broken ON rc text)
if(rc EQUAL 0)
  message(FATAL_ERROR "configure passed although api links mp::priv through core:\n${text}")
endif()
# CMake wraps long messages: compare with runs of white space collapsed.
string(REGEX REPLACE "[ \t\r\n]+" " " flat "${text}")
string(FIND "${flat}" "${expected}" at)
if(at LESS 0)
  message(FATAL_ERROR "configure failed, but without naming the path \"${expected}\":\n${text}")
endif()

configure_case(kept OFF rc text)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configure failed although api reaches no privileged target:\n${text}")
endif()
message(STATUS "trust boundary: the broken project fails naming the path, the kept one passes")
