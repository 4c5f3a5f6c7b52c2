# cmake -DNM=<nm> -DOBJECTS=<a.o|b.o|...> -P child_symbols.cmake
# The code between clone and exec (src/sandbox, the mp_sandbox_child object library) must
# not allocate, throw, lock, log through stdio or call glibc wrappers that synchronise with
# other threads: it runs in a copy of a multi-threaded supervisor, where another thread may
# have held malloc's or stdio's lock at clone time. The objects' undefined symbols show what
# they call; this fails naming the object and the symbol.
foreach(var NM OBJECTS)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "child_symbols.cmake: pass -D${var}=...")
  endif()
endforeach()
string(REPLACE "|" ";" objects "${OBJECTS}")
# Allocation and deallocation (malloc family, operator new/delete), exceptions and RTTI,
# locks, stdio and syslog, and the glibc wrappers child.cc replaces with raw syscalls
# (fork runs atfork handlers; set*id broadcast to every thread through __nptl_setxid).
set(forbidden
  "malloc|calloc|realloc|free|posix_memalign|aligned_alloc|strdup|strndup"
  "_Znwm|_Znam|_ZnwmSt11align_val_t|_ZnamSt11align_val_t|_ZdlPv.*|_ZdaPv.*"
  "__cxa_throw|__cxa_allocate_exception|__cxa_begin_catch|__cxa_rethrow|_ZTI.*|__dynamic_cast"
  "pthread_mutex_lock|pthread_mutex_unlock|__libc_single_threaded"
  "printf|fprintf|vfprintf|puts|fputs|fwrite|perror|syslog|vsyslog|__printf_chk|__fprintf_chk"
  "fork|vfork|setuid|setgid|setreuid|setregid|setresuid|setresgid|setgroups|initgroups"
  "getpwnam|getgrnam|opendir|readdir|exit|atexit")
list(JOIN forbidden "|" forbidden)
set(problems "")
set(total 0)
foreach(obj IN LISTS objects)
  execute_process(COMMAND ${NM} --undefined-only --format=posix "${obj}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${NM} ${obj} failed: ${err}")
  endif()
  string(REGEX MATCHALL "[^\n]+" lines "${out}")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE " .*" "" sym "${line}")
    string(REGEX REPLACE "@.*" "" sym "${sym}")
    math(EXPR total "${total} + 1")
    if(sym MATCHES "^(${forbidden})$")
      get_filename_component(name "${obj}" NAME)
      string(APPEND problems "  ${name}: ${sym}\n")
    endif()
  endforeach()
endforeach()
# Control: the objects do call into libc (_exit, syscall), so an nm that listed nothing
# would not pass silently.
if(total EQUAL 0)
  message(FATAL_ERROR "no undefined symbols in ${OBJECTS}: is ${NM} reading these objects?")
endif()
if(problems)
  message(FATAL_ERROR "child code (between clone and exec) calls what it must not:\n"
                      "${problems}Use raw syscalls and stack buffers there (style.md example 4).")
endif()
message(STATUS "child code: ${total} undefined symbols checked, none forbidden")
