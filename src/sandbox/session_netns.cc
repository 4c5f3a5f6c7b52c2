// Allowlist sessions' network namespaces and their egress listeners. See session_netns.h.
#include "sandbox/session_netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>

namespace mp::sandbox {
namespace {

// Runs `work` on a new thread and returns its result. A network namespace is a property of
// the thread (task), so unshare/setns there leave every other thread where it was; the thread
// ends right after, taking its namespace membership with it.
template <typename T>
Result<T> OnHelperThread(std::function<Result<T>()> work) {
  std::optional<Result<T>> out;
  std::thread t([&] { out.emplace(work()); });
  t.join();
  return std::move(*out);
}

Result<void> BringLoUp() {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return ErrnoError("socket(AF_INET) for lo");
  struct ifreq ifr {};
  std::memcpy(ifr.ifr_name, "lo", 3);
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) < 0) return ErrnoError("ioctl(SIOCGIFFLAGS, lo)");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) < 0) return ErrnoError("ioctl(SIOCSIFFLAGS, lo)");
  return Ok();
}

// `ip route add local 0.0.0.0/0 dev lo table local` over rtnetlink: with it every IPv4
// destination is a local address, so a connect to any of them reaches a socket bound to
// 0.0.0.0 on that port (Linux's "AnyIP"), and nothing ever leaves the namespace.
Result<void> AddLocalDefaultRoute() {
  UniqueFd nl(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!nl) return ErrnoError("socket(AF_NETLINK, NETLINK_ROUTE)");
  const unsigned lo = ::if_nametoindex("lo");
  if (lo == 0) return ErrnoError("if_nametoindex(lo)");
  struct {
    nlmsghdr nh;
    rtmsg rt;
    char attrs[64];
  } req{};
  req.nh.nlmsg_type = RTM_NEWROUTE;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  req.nh.nlmsg_seq = 1;
  req.rt.rtm_family = AF_INET;
  req.rt.rtm_dst_len = 0;
  req.rt.rtm_table = RT_TABLE_LOCAL;
  req.rt.rtm_protocol = RTPROT_BOOT;
  req.rt.rtm_scope = RT_SCOPE_HOST;
  req.rt.rtm_type = RTN_LOCAL;
  size_t len = NLMSG_LENGTH(sizeof(rtmsg));
  auto* oif = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(&req) + NLMSG_ALIGN(len));
  oif->rta_type = RTA_OIF;
  oif->rta_len = RTA_LENGTH(sizeof(uint32_t));
  const uint32_t index = lo;
  std::memcpy(RTA_DATA(oif), &index, sizeof index);
  len = NLMSG_ALIGN(len) + RTA_ALIGN(oif->rta_len);
  req.nh.nlmsg_len = static_cast<uint32_t>(len);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(nl.get(), &req, len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    return ErrnoError("sendto(RTM_NEWROUTE local 0.0.0.0/0)");
  }
  char buf[4096];
  const ssize_t n = ::recv(nl.get(), buf, sizeof buf, 0);
  if (n < 0) return ErrnoError("recv(RTM_NEWROUTE ack)");
  auto* nh = reinterpret_cast<nlmsghdr*>(buf);
  if (!NLMSG_OK(nh, static_cast<unsigned>(n)) || nh->nlmsg_type != NLMSG_ERROR) {
    return PlainError("RTM_NEWROUTE local 0.0.0.0/0: unexpected netlink answer");
  }
  const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(nh));
  if (err->error != 0) return ErrnoError(-err->error, "RTM_NEWROUTE local 0.0.0.0/0 dev lo");
  return Ok();
}

Result<UniqueFd> Listener(int type, const char* address, uint16_t port, const std::string& what) {
  UniqueFd s(::socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s) return ErrnoError(std::string("socket for the egress ") + what + " listener");
  const int one = 1;
  if (type == SOCK_STREAM &&
      ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
    return ErrnoError(std::string("setsockopt(SO_REUSEADDR) of the egress ") + what + " listener");
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (::inet_pton(AF_INET, address, &sa.sin_addr) != 1) {
    return PlainError(std::string("bad address ") + address);
  }
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
    return ErrnoError(std::string("bind(") + address + ":" + std::to_string(port) + ", egress " +
                      what + ")");
  }
  if (type == SOCK_STREAM && ::listen(s.get(), kEgressBacklog) < 0) {
    return ErrnoError(std::string("listen(egress ") + what + ")");
  }
  return s;
}

}  // namespace

Result<UniqueFd> CreateAllowlistNetns() {
  return OnHelperThread<UniqueFd>([]() -> Result<UniqueFd> {
    if (::unshare(CLONE_NEWNET) < 0) return ErrnoError("unshare(CLONE_NEWNET)");
    MP_RETURN_IF_ERROR(BringLoUp());
    MP_RETURN_IF_ERROR(AddLocalDefaultRoute());
    UniqueFd ns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!ns) return ErrnoError("open(/proc/thread-self/ns/net)");
    return ns;
  });
}

Result<UniqueFd> OpenNetnsOf(int pidfd) {
  return OnHelperThread<UniqueFd>([pidfd]() -> Result<UniqueFd> {
    if (::setns(pidfd, CLONE_NEWNET) < 0) return ErrnoError("setns(pidfd, CLONE_NEWNET)");
    UniqueFd ns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!ns) return ErrnoError("open(/proc/thread-self/ns/net)");
    return ns;
  });
}

Result<EgressListenerFds> CreateEgressListeners(int netns_fd, size_t endpoint_count) {
  return OnHelperThread<EgressListenerFds>([netns_fd,
                                            endpoint_count]() -> Result<EgressListenerFds> {
    if (::setns(netns_fd, CLONE_NEWNET) < 0) return ErrnoError("setns(session network namespace)");
    EgressListenerFds out;
    MP_TRY(out.proxy, Listener(SOCK_STREAM, kEgressProxyAddress, kEgressProxyPort, "proxy"));
    MP_TRY(out.tls, Listener(SOCK_STREAM, "0.0.0.0", kEgressTlsPort, "TLS"));
    MP_TRY(out.http, Listener(SOCK_STREAM, "0.0.0.0", kEgressHttpPort, "HTTP"));
    MP_TRY(out.dns, Listener(SOCK_DGRAM, "127.0.0.1", kEgressDnsPort, "DNS"));
    for (size_t i = 0; i < endpoint_count; ++i) {
      MP_TRY(auto fd,
             Listener(SOCK_STREAM, "127.0.0.1", static_cast<uint16_t>(kEgressEndpointPortBase + i),
                      "gateway endpoint " + std::to_string(i)));
      out.endpoints.push_back(std::move(fd));
    }
    return out;
  });
}

}  // namespace mp::sandbox
