// The compiled parts of Asio and Beast, once for the whole API (separate compilation: every
// other file of monkeyproof-api is built with BOOST_ASIO_SEPARATE_COMPILATION and
// BOOST_BEAST_SEPARATE_COMPILATION, which keeps each translation unit's build time down).
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
