// The one translation unit that compiles Asio and Beast for mp_egress_gateway (every other
// file of the library is built with BOOST_ASIO_SEPARATE_COMPILATION and
// BOOST_BEAST_SEPARATE_COMPILATION, which keeps each translation unit's build time down).
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
