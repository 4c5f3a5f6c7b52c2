# The trust boundary in the build graph (style.md example 14): code that faces the network
# (monkeyproof-api) or the user (the CLI) must not reach privileged code through any chain of
# links. Privileged targets carry the MP_PRIVILEGED property (mp_mark_privileged); at the end
# of configure, mp_check_trust_boundary walks the link graph of the unprivileged targets
# transitively (private and interface links, aliases resolved, generator expressions read
# conservatively: a conditional link counts as a link) and stops configure with the path it
# found, e.g. "monkeyproof-api -> mp_http_server -> mp::sandbox (mp_sandbox)".
# Used by the top-level CMakeLists.txt and by the test project in tests/unit/trust_boundary.
include_guard(GLOBAL)

# mp_mark_privileged(<target>...): these targets run with privileges or make privileged calls.
function(mp_mark_privileged)
  foreach(tgt IN LISTS ARGN)
    if(NOT TARGET ${tgt})
      message(FATAL_ERROR "mp_mark_privileged: no target \"${tgt}\"")
    endif()
    set_property(TARGET ${tgt} PROPERTY MP_PRIVILEGED TRUE)
  endforeach()
endfunction()

# The targets a link item names. Items come from LINK_LIBRARIES or INTERFACE_LINK_LIBRARIES:
# plain names, aliases, "::@(directory)" markers that CMake adds when a link is made from
# another directory, and generator expressions such as $<LINK_ONLY:x> (the interface of a
# static library's private links). Every word of a generator expression that names a target
# is taken, whatever its condition.
function(_mp_link_item_targets item out)
  set(found "")
  string(REGEX REPLACE "::@\\([^)]*\\)" "" item "${item}")
  if(item STREQUAL "")
    set(${out} "" PARENT_SCOPE)
    return()
  endif()
  if(item MATCHES "\\$<")
    # Namespaced names (mp::sandbox) first, then the other words between the separators.
    set(ns_regex "[A-Za-z0-9_.+-]+::[A-Za-z0-9_.+-]+")
    string(REGEX MATCHALL "${ns_regex}" words "${item}")
    string(REGEX REPLACE "${ns_regex}" " " rest "${item}")
    string(REGEX REPLACE "[$<>:,;]" " " rest "${rest}")
    string(REGEX MATCHALL "[^ ]+" rest "${rest}")
    list(APPEND words ${rest})
  else()
    set(words "${item}")
  endif()
  foreach(w IN LISTS words)
    if(TARGET "${w}")
      list(APPEND found "${w}")
    endif()
  endforeach()
  set(${out} "${found}" PARENT_SCOPE)
endfunction()

# mp_check_trust_boundary(TARGETS <target>...): FATAL_ERROR when one of them reaches a target
# marked privileged. Call it once every target is defined (the end of the top-level file).
function(mp_check_trust_boundary)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "" "TARGETS")
  foreach(start IN LISTS arg_TARGETS)
    if(NOT TARGET ${start})
      message(FATAL_ERROR "mp_check_trust_boundary: no target \"${start}\" to check")
    endif()
    # Breadth-first over link items; _mp_via_<target> holds the path that reached it.
    set(queue "${start}")
    set(seen "${start}")
    set("_mp_via_${start}" "${start}")
    while(queue)
      list(POP_FRONT queue name)
      get_target_property(real "${name}" ALIASED_TARGET)
      if(NOT real)
        set(real "${name}")
      endif()
      set(shown "${name}")
      if(NOT real STREQUAL name)
        set(shown "${name} (${real})")
      endif()
      get_target_property(privileged "${real}" MP_PRIVILEGED)
      if(privileged)
        set(via "${_mp_via_${name}}")
        list(POP_BACK via)
        list(APPEND via "${shown}")
        string(REPLACE ";" " -> " path "${via}")
        message(FATAL_ERROR
          "trust boundary: ${start} reaches the privileged target ${shown}: ${path}.\n"
          "${start} must link only unprivileged code (mp::common and its own libraries); "
          "move what it needs into src/common, or drop the link.")
      endif()
      get_target_property(type "${real}" TYPE)
      get_target_property(imported "${real}" IMPORTED)
      set(items "")
      if(NOT type STREQUAL "INTERFACE_LIBRARY" AND NOT imported)
        get_target_property(direct "${real}" LINK_LIBRARIES)
        if(direct)
          list(APPEND items ${direct})
        endif()
      endif()
      get_target_property(iface "${real}" INTERFACE_LINK_LIBRARIES)
      if(iface)
        list(APPEND items ${iface})
      endif()
      foreach(item IN LISTS items)
        _mp_link_item_targets("${item}" next_targets)
        foreach(next IN LISTS next_targets)
          if(NOT next IN_LIST seen)
            list(APPEND seen "${next}")
            list(APPEND queue "${next}")
            set("_mp_via_${next}" "${_mp_via_${name}};${next}")
          endif()
        endforeach()
      endforeach()
    endwhile()
  endforeach()
endfunction()
