// FakeManager: systemd's notify socket and fd store, played by a test (fake_manager.h).
#include "fake_manager.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <gtest/gtest.h>

namespace mp::testing {

FakeManager::FakeManager(std::string notify_path) : path_(std::move(notify_path)) {
  ::unlink(path_.c_str());
  sock_.Reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  struct sockaddr_un a {};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
  EXPECT_EQ(::bind(sock_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0)
      << path_ << ": " << std::strerror(errno);
}

bool FakeManager::Receive(int ms) {
  struct pollfd p = {sock_.get(), POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return false;
  char buf[4096];
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  struct iovec iov = {buf, sizeof buf};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(sock_.get(), &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) return false;
  std::vector<UniqueFd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_type != SCM_RIGHTS) continue;
    for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  const std::string text(buf, static_cast<size_t>(n));
  messages.push_back(text);
  const size_t at = text.find("FDNAME=");
  const std::string name =
      at == std::string::npos ? "" : text.substr(at + 7, text.find('\n', at) - (at + 7));
  if (text.starts_with("FDSTORE=1\n")) {
    EXPECT_NE(text.find("\nFDPOLL=0"), std::string::npos) << text;
    EXPECT_EQ(fds.size(), 1u) << text;
    for (auto& fd : fds) store.push_back({name, std::move(fd)});
  } else if (text.starts_with("FDSTOREREMOVE=1\n")) {
    ++removals[name];
    std::erase_if(store, [&](const auto& e) { return e.first == name; });
  }
  return true;
}

void FakeManager::Drain() {
  while (Receive(0)) {
  }
}

void FakeManager::ReceiveUntil(const std::function<bool()>& done, int ms) {
  while (!done() && Receive(ms)) {
  }
}

std::set<std::string> FakeManager::StoredNames() const {
  std::set<std::string> out;
  for (const auto& e : store) out.insert(e.first);
  return out;
}

bool FakeManager::Said(const std::string& text) const {
  return std::find(messages.begin(), messages.end(), text) != messages.end();
}

void FakeManager::PassToChild() const {
  // Fds 3.. as systemd leaves them: first out of the way (they may sit at 3..), then placed.
  std::vector<int> moved;
  std::string names;
  // Above the range they go to (not at a fixed 1000: RLIMIT_NOFILE's soft limit of 1024
  // would fit only 24 there).
  const int above = 3 + static_cast<int>(store.size());
  for (const auto& [name, fd] : store) {
    moved.push_back(::fcntl(fd.get(), F_DUPFD_CLOEXEC, above));
    names += (names.empty() ? "" : ":") + name;
  }
  for (size_t i = 0; i < moved.size(); ++i) ::dup2(moved[i], 3 + static_cast<int>(i));
  if (!moved.empty()) {
    ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    ::setenv("LISTEN_FDS", std::to_string(moved.size()).c_str(), 1);
    ::setenv("LISTEN_FDNAMES", names.c_str(), 1);
  }
  ::setenv("NOTIFY_SOCKET", path_.c_str(), 1);
}

}  // namespace mp::testing
