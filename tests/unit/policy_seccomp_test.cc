// A policy's seccomp program is compiled once, when its file loads, and shared by every spawn:
// the loaded program is instruction for instruction what compiling the policy's profile for
// one spawn gives; Tighten and BuildSpawnRequest hand out that one program, never a copy; a
// reload brings new programs and the old ones go once nothing holds them. Runs as any user.
#include <gtest/gtest.h>
#include <linux/filter.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "sandbox/seccomp.h"
#include "supervisor/policy.h"
#include "temp_dir.h"

namespace mp::supervisor {
namespace {

std::string Doc(const std::string& extra = "") {
  return R"({"description": "d", "type": "exec", "run_as": {"user": "nobody"},)"
         R"( "workspace_roots": ["/srv/ws"])" +
         (extra.empty() ? "" : ", " + extra) + "}";
}

bool SameInstructions(const sandbox::SeccompProgram& a, const sandbox::SeccompProgram& b) {
  const auto x = a.instructions();
  const auto y = b.instructions();
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size_bytes()) == 0;
}

// What a spawn compiled for itself before programs were kept with the policy.
sandbox::SeccompProgram CompiledPerSpawn(const Policy& p) {
  auto r = sandbox::CompileSeccomp(p.seccomp);
  EXPECT_TRUE(r.has_value()) << p.name << ": " << r.error().what;
  return std::move(*r);
}

TEST(PolicySeccompTest, EveryShippedPolicyCarriesWhatASpawnWouldCompile) {
  auto set = PolicySet::Load(MP_REPO_POLICIES_DIR);
  ASSERT_TRUE(set.has_value()) << set.error().what;
  ASSERT_FALSE(set->all().empty());
  for (const auto& [name, policy] : set->all()) {
    ASSERT_NE(policy->seccomp_program, nullptr) << name;
    const sandbox::SeccompProgram own = CompiledPerSpawn(*policy);
    EXPECT_TRUE(SameInstructions(*policy->seccomp_program, own)) << name;
    // The sock_fprog a spawn passes to seccomp(2) covers exactly those instructions.
    const sock_fprog* f = policy->seccomp_program->fprog();
    EXPECT_EQ(f->len, policy->seccomp_program->instructions().size()) << name;
    EXPECT_EQ(f->filter, policy->seccomp_program->instructions().data()) << name;
  }
}

// Control: the comparison above tells programs apart; a policy's own deny list changes it.
TEST(PolicySeccompTest, ADifferentProfileGivesADifferentProgram) {
  PolicyLoad plain = ParsePolicy("/p/plain.json", Doc());
  PolicyLoad denying = ParsePolicy("/p/denying.json", Doc(R"("seccomp": {"kill": ["ptrace"]})"));
  ASSERT_TRUE(plain.errors.empty()) << ::testing::PrintToString(plain.errors);
  ASSERT_TRUE(denying.errors.empty()) << ::testing::PrintToString(denying.errors);
  EXPECT_FALSE(SameInstructions(*plain.policy->seccomp_program, *denying.policy->seccomp_program));
  EXPECT_TRUE(
      SameInstructions(*denying.policy->seccomp_program, CompiledPerSpawn(*denying.policy)));
}

TEST(PolicySeccompTest, SpawnsShareTheLoadedProgram) {
  PolicyLoad load = ParsePolicy("/p/exec.json", Doc());
  ASSERT_TRUE(load.errors.empty()) << ::testing::PrintToString(load.errors);
  auto a = Tighten(*load.policy, {});
  auto b = Tighten(*load.policy, {});
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(a->policy.seccomp_program, load.policy->seccomp_program);
  EXPECT_EQ(b->policy.seccomp_program, load.policy->seccomp_program);
  EXPECT_EQ(a->policy.seccomp_program->fprog(), b->policy.seccomp_program->fprog());
}

TEST(PolicySeccompTest, AReloadReplacesTheProgramAndTheOldOneGoesWithItsLastHolder) {
  test::TempDir dir("mp-policy-seccomp");
  dir.Write("exec.json", Doc());
  auto loaded = PolicySet::Load(dir.path());
  ASSERT_TRUE(loaded.has_value()) << loaded.error().what;
  std::optional<PolicySet> current(std::move(*loaded));
  std::weak_ptr<const sandbox::SeccompProgram> old_program = current->Find("exec")->seccomp_program;

  // A session started before the reload keeps its program (its child may still be cloning).
  std::optional<EffectivePolicy> held;
  {
    auto t = Tighten(*current->Find("exec"), {});
    ASSERT_TRUE(t.has_value()) << t.error().what;
    held.emplace(std::move(*t));
  }

  dir.Write("exec.json", Doc(R"("seccomp": {"kill": ["ptrace"]})"));
  auto reloaded = current->Reload();
  ASSERT_TRUE(reloaded.has_value()) << reloaded.error().what;
  current.emplace(std::move(*reloaded));
  const auto& fresh = current->Find("exec")->seccomp_program;
  ASSERT_NE(fresh, nullptr);
  EXPECT_NE(fresh, old_program.lock());
  EXPECT_TRUE(SameInstructions(*fresh, CompiledPerSpawn(*current->Find("exec"))));

  ASSERT_FALSE(old_program.expired());  // the old set is gone, the session holds it
  EXPECT_TRUE(SameInstructions(*held->policy.seccomp_program, CompiledPerSpawn(held->policy)));
  held.reset();
  EXPECT_TRUE(old_program.expired());
}

}  // namespace
}  // namespace mp::supervisor
