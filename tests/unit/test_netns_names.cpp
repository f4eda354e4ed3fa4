#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include "format.hpp"
#include "netns_names.hpp"

using namespace ctct;

namespace {

const std::string kId = "7d3f0b8e0f0b3a4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4";
const std::string kUid = "4f6c2b1e-8a3d-4c1b-9e2f-0d5a7b3c9e11";
const std::string kUidUnderscores = "4f6c2b1e_8a3d_4c1b_9e2f_0d5a7b3c9e11";

} // namespace

TEST(NetnsLink, Parses)
{
	EXPECT_EQ(parse_netns_link("net:[4026531840]"), 4026531840u);
	EXPECT_FALSE(parse_netns_link("net:[]"));
	EXPECT_FALSE(parse_netns_link("mnt:[4026531840]"));
	EXPECT_FALSE(parse_netns_link("net:[4026531840"));
	EXPECT_FALSE(parse_netns_link("net:[12a]"));
	EXPECT_FALSE(parse_netns_link("net:[99999999999]"));
}

// Paths as the runtimes and the kubelet write them (cgroup v2 "0::" lines and v1 lines of hybrid hosts).
TEST(CgroupPath, ContainerdSystemdDriver)
{
	auto c = parse_proc_cgroup("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidUnderscores +
				   ".slice/cri-containerd-" + kId + ".scope\n");
	ASSERT_TRUE(c);
	EXPECT_EQ(c->runtime, "containerd");
	EXPECT_EQ(c->container_id, kId);
	EXPECT_EQ(c->pod_uid, kUid);
}

TEST(CgroupPath, GuaranteedQosHasNoQosSlice)
{
	auto c = parse_cgroup_path("/kubepods.slice/kubepods-pod" + kUidUnderscores + ".slice/crio-" + kId + ".scope");
	ASSERT_TRUE(c);
	EXPECT_EQ(c->runtime, "cri-o");
	EXPECT_EQ(c->container_id, kId);
	EXPECT_EQ(c->pod_uid, kUid);
}

TEST(CgroupPath, CrioConmonIsNotTheContainer)
{
	// conmon lives beside the container in the pod's slice, in the host netns, under crio-conmon-<id>
	auto c = parse_cgroup_path("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidUnderscores +
				   ".slice/crio-conmon-" + kId + ".scope");
	ASSERT_TRUE(c);
	EXPECT_EQ(c->container_id, "");
	EXPECT_EQ(c->pod_uid, kUid);
}

TEST(CgroupPath, KindNestedKubeletRoot)
{
	auto c = parse_cgroup_path("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
				   "kubelet-kubepods-besteffort-pod" + kUidUnderscores + ".slice/cri-containerd-" + kId + ".scope");
	ASSERT_TRUE(c);
	EXPECT_EQ(c->pod_uid, kUid);
	EXPECT_EQ(c->container_id, kId);
}

TEST(CgroupPath, CgroupfsDriverV1Lines)
{
	// cgroupfs driver on a v1 host: every controller line has the path; the unified line is "/"
	std::string text = "12:memory:/kubepods/burstable/pod" + kUid + "/" + kId + "\n"
			   "11:pids:/kubepods/burstable/pod" + kUid + "/" + kId + "\n"
			   "0::/\n";
	auto c = parse_proc_cgroup(text);
	ASSERT_TRUE(c);
	EXPECT_EQ(c->runtime, ""); // containerd or docker: the path does not say
	EXPECT_EQ(c->container_id, kId);
	EXPECT_EQ(c->pod_uid, kUid);
	auto g = parse_cgroup_path("/kubepods/pod" + kUid + "/" + kId); // guaranteed
	ASSERT_TRUE(g);
	EXPECT_EQ(g->pod_uid, kUid);
}

TEST(CgroupPath, StaticPodUidIsAHash)
{
	auto c = parse_cgroup_path("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
				   "0a1b2c3d4e5f60718293a4b5c6d7e8f9.slice/cri-containerd-" + kId + ".scope");
	ASSERT_TRUE(c);
	EXPECT_EQ(c->pod_uid, "0a1b2c3d4e5f60718293a4b5c6d7e8f9");
}

TEST(CgroupPath, Docker)
{
	auto s = parse_proc_cgroup("0::/system.slice/docker-" + kId + ".scope\n");
	ASSERT_TRUE(s);
	EXPECT_EQ(s->runtime, "docker");
	EXPECT_EQ(s->container_id, kId);
	EXPECT_EQ(s->pod_uid, "");
	auto f = parse_proc_cgroup("0::/docker/" + kId + "\n");
	ASSERT_TRUE(f);
	EXPECT_EQ(f->runtime, "docker");
	EXPECT_EQ(f->container_id, kId);
}

TEST(CgroupPath, HostProcessesAreNotContainers)
{
	EXPECT_FALSE(parse_proc_cgroup("0::/init.scope\n"));
	EXPECT_FALSE(parse_proc_cgroup("0::/user.slice/user-0.slice/session-3.scope\n"));
	EXPECT_FALSE(parse_proc_cgroup("0::/system.slice/docker.service\n"));
	EXPECT_FALSE(parse_proc_cgroup("0::/\n")); // inside a cgroup namespace
	EXPECT_FALSE(parse_proc_cgroup("4:memory:/process_api/640f6797a58b95283df87aa6ef2ada09\n0::/\n"));
	EXPECT_FALSE(parse_proc_cgroup(""));
	// an id of the wrong length or with upper case is not a runtime's
	EXPECT_FALSE(parse_cgroup_path("/docker/" + kId.substr(1)));
	EXPECT_FALSE(parse_cgroup_path("/system.slice/docker-7D3F" + kId.substr(4) + ".scope"));
	EXPECT_FALSE(parse_cgroup_path("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podnot_a_uid.slice"));
}

TEST(PodLogDir, Parses)
{
	auto p = parse_pod_log_dir("kube-system_coredns-5d78c9869d-8xk2q_" + kUid);
	ASSERT_TRUE(p);
	EXPECT_EQ(p->pod_namespace, "kube-system");
	EXPECT_EQ(p->pod_name, "coredns-5d78c9869d-8xk2q");
	EXPECT_EQ(p->pod_uid, kUid);
	EXPECT_FALSE(parse_pod_log_dir("kube-system_coredns_notauid"));
	EXPECT_FALSE(parse_pod_log_dir("_coredns_" + kUid));
	EXPECT_FALSE(parse_pod_log_dir("a_b_c_" + kUid));
	EXPECT_FALSE(parse_pod_log_dir(".."));
}

TEST(NetnsLabel, PreferredName)
{
	NetnsInfo i;
	EXPECT_EQ(netns_label(i), "");
	i.processes = {{4242, "sleep"}};
	EXPECT_EQ(netns_label(i), "pid:4242/sleep");
	i.names = {"blue"};
	EXPECT_EQ(netns_label(i), "netns:blue");
	i.container = CgroupContainer{"docker", kId, ""};
	EXPECT_EQ(netns_label(i), "container:" + kId.substr(0, 12));
	i.container->pod_uid = kUid;
	EXPECT_EQ(netns_label(i), "pod:" + kUid);
	i.pod = PodRef{"default", "web-1", kUid};
	EXPECT_EQ(netns_label(i), "pod:default/web-1");
	i.host = true;
	EXPECT_EQ(netns_label(i), "host");
}

TEST(NetnsInfoJson, NullsForWhatIsNotKnown)
{
	NetnsInfo i;
	i.processes = {{7, "sleep"}};
	i.process_count = 1;
	i.container = CgroupContainer{"", "", kUid}; // a pod-level cgroup: pod, no container
	auto j = netns_info_json(i);
	EXPECT_EQ(j["label"], "pod:" + kUid);
	EXPECT_TRUE(j["container"].is_null());
	EXPECT_EQ(j["pod"]["uid"], kUid);
	EXPECT_TRUE(j["pod"]["namespace"].is_null());
	EXPECT_TRUE(j["pod"]["name"].is_null());
	EXPECT_EQ(j["processes"][0]["comm"], "sleep");
	EXPECT_EQ(j["names"], nlohmann::json::array());
	EXPECT_TRUE(netns_info_json(NetnsInfo{})["label"].is_null());
}

// A /proc, /run/netns and /var/log/pods built in a temporary directory: the scan and the cache.
class FakeRoots : public ::testing::Test {
protected:
	std::string dir;
	NamingRoots roots;
	void SetUp() override
	{
		char tmpl[] = "/tmp/ctct-names.XXXXXX";
		ASSERT_TRUE(mkdtemp(tmpl));
		dir = tmpl;
		roots = {dir + "/proc", dir + "/netns", dir + "/pods"};
		mkdir(roots.proc.c_str(), 0755);
		mkdir(roots.run_netns.c_str(), 0755);
		mkdir(roots.pod_logs.c_str(), 0755);
		// the scan tells a netns bind mount from a stray file by the device of proc/self/ns/net: here
		// both are files of the same filesystem
		mkdir((roots.proc + "/self").c_str(), 0755);
		mkdir((roots.proc + "/self/ns").c_str(), 0755);
		write(roots.proc + "/self/ns/net", "");
	}
	void TearDown() override { ASSERT_EQ(system(("rm -rf " + dir).c_str()), 0); }
	static void write(const std::string &path, const std::string &text) { std::ofstream(path) << text; }
	void process(int pid, uint32_t netns, const std::string &comm, const std::string &cgroup)
	{
		std::string p = roots.proc + "/" + std::to_string(pid);
		mkdir(p.c_str(), 0755);
		mkdir((p + "/ns").c_str(), 0755);
		unlink((p + "/ns/net").c_str());
		ASSERT_EQ(symlink(("net:[" + std::to_string(netns) + "]").c_str(), (p + "/ns/net").c_str()), 0);
		write(p + "/comm", comm + "\n");
		write(p + "/cgroup", cgroup + "\n");
	}
	uint32_t named_netns(const std::string &name)
	{
		write(roots.run_netns + "/" + name, "");
		struct stat st;
		stat((roots.run_netns + "/" + name).c_str(), &st);
		return (uint32_t)st.st_ino;
	}
};

TEST_F(FakeRoots, WalkFindsPidsAndNamesSorted)
{
	process(900, 200, "b", "0::/");
	process(80, 200, "a", "0::/");
	process(7, 300, "c", "0::/");
	uint32_t blue = named_netns("blue");
	auto m = walk_netns(roots);
	ASSERT_EQ(m.size(), 3u);
	EXPECT_EQ(m[200].pids, (std::vector<int>{80, 900}));
	EXPECT_TRUE(m[200].names.empty());
	EXPECT_EQ(m[300].pids, std::vector<int>{7});
	EXPECT_TRUE(m[blue].pids.empty());
	EXPECT_EQ(m[blue].names, std::vector<std::string>{"blue"});
	// no proc/self/ns/net: no device to tell a bind mount from a stray file, so no name is trusted
	unlink((roots.proc + "/self/ns/net").c_str());
	EXPECT_EQ(walk_netns(roots).count(blue), 0u);
}

TEST_F(FakeRoots, ScanNamesEveryNetns)
{
	process(1, 100, "systemd", "0::/init.scope");
	process(2, 100, "kthreadd", "0::/");
	process(900, 200, "nginx", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
					   kUidUnderscores + ".slice/cri-containerd-" + std::string(64, 'b') + ".scope");
	process(800, 200, "pause", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
					   kUidUnderscores + ".slice/cri-containerd-" + kId + ".scope");
	for (int pid = 801; pid <= 804; pid++)
		process(pid, 200, "worker", "0::/");
	process(50, 300, "sleep", "0::/user.slice");
	mkdir((roots.pod_logs + "/default_web-1_" + kUid).c_str(), 0755);
	uint32_t blue = named_netns("blue");
	auto m = scan_netns_names(roots);
	ASSERT_EQ(m.count(100), 1u);
	EXPECT_TRUE(m[100].host);
	EXPECT_EQ(netns_label(m[100]), "host");
	EXPECT_FALSE(m[100].container);
	const NetnsInfo &pod = m[200];
	EXPECT_EQ(pod.process_count, 6u);
	ASSERT_EQ(pod.processes.size(), NetnsInfo::kMaxProcesses);
	EXPECT_EQ(pod.processes[0].pid, 800);
	EXPECT_EQ(pod.processes[0].comm, "pause");
	ASSERT_TRUE(pod.container);
	EXPECT_EQ(pod.container->container_id, kId); // the lowest pid's: the sandbox
	ASSERT_TRUE(pod.pod);
	EXPECT_EQ(netns_label(pod), "pod:default/web-1");
	EXPECT_EQ(netns_label(m[300]), "pid:50/sleep");
	ASSERT_EQ(m.count(blue), 1u);
	EXPECT_EQ(m[blue].names, std::vector<std::string>{"blue"});
	EXPECT_EQ(m[blue].process_count, 0u);
}

TEST_F(FakeRoots, CacheScansOnNewInodesAndNoticesReuse)
{
	const uint64_t ms = 1000000;
	process(1, 100, "systemd", "0::/init.scope");
	process(50, 300, "sleep", "0::/user.slice");
	NetnsNamer namer(roots, 200 * ms, 10000 * ms);
	namer.observe(300, 1000 * ms);
	EXPECT_EQ(namer.scans(), 1u);
	EXPECT_EQ(namer.get(300).label, "pid:50/sleep");
	EXPECT_NE(namer.get(300).json_text.find("\"comm\":\"sleep\""), std::string::npos);
	namer.observe(300, 1001 * ms); // known: no scan
	namer.observe(100, 1002 * ms);
	EXPECT_EQ(namer.scans(), 1u);
	EXPECT_EQ(namer.get(100).label, "host");

	// a new netns within the interval: unnamed now, named by the first event after it
	process(60, 400, "dnsmasq", "0::/");
	namer.observe(400, 1100 * ms);
	EXPECT_EQ(namer.scans(), 1u);
	EXPECT_EQ(namer.get(400).label, "");
	namer.observe(400, 1250 * ms);
	EXPECT_EQ(namer.scans(), 2u);
	EXPECT_EQ(namer.get(400).label, "pid:60/dnsmasq");

	// a netns nothing visible holds: one scan, then the miss is kept until the cache is old
	namer.observe(999, 1500 * ms);
	EXPECT_EQ(namer.scans(), 3u);
	namer.observe(999, 1800 * ms);
	namer.observe(999, 2100 * ms);
	EXPECT_EQ(namer.scans(), 3u);
	EXPECT_TRUE(namer.get(999).json["label"].is_null());
	namer.observe(998, 2150 * ms); // a second such netns: one scan, and the first's miss is kept
	EXPECT_EQ(namer.scans(), 4u);
	namer.observe(999, 2160 * ms);
	namer.observe(998, 2170 * ms);
	namer.observe(999, 2400 * ms);
	namer.observe(998, 2410 * ms);
	EXPECT_EQ(namer.scans(), 4u);

	// inode 300's process left and inode 300 went to a new netns held by another process: the old
	// name must not be given to the new netns
	ASSERT_EQ(system(("rm -rf " + roots.proc + "/50").c_str()), 0);
	process(70, 300, "nc", "0::/");
	namer.observe(300, 2600 * ms);
	EXPECT_EQ(namer.scans(), 5u);
	EXPECT_EQ(namer.get(300).label, "pid:70/nc");
	// the same right after a scan made for another inode: unknown, then named by the next scan allowed
	ASSERT_EQ(system(("rm -rf " + roots.proc + "/70").c_str()), 0);
	process(71, 300, "nc2", "0::/");
	process(61, 500, "new", "0::/");
	namer.observe(500, 2900 * ms);
	EXPECT_EQ(namer.scans(), 6u);
	ASSERT_EQ(system(("rm -rf " + roots.proc + "/71").c_str()), 0);
	process(72, 300, "nc3", "0::/");
	namer.observe(300, 2910 * ms);
	EXPECT_EQ(namer.scans(), 6u);
	EXPECT_EQ(namer.get(300).label, "");
	namer.observe(300, 3120 * ms);
	EXPECT_EQ(namer.scans(), 7u);
	EXPECT_EQ(namer.get(300).label, "pid:72/nc3");
	// the cache is rescanned when old even for known inodes
	uint64_t before = namer.scans();
	namer.observe(100, 20000 * ms);
	EXPECT_EQ(namer.scans(), before + 1);
}

TEST(NetnsInfoFormat, JsonLineMatchesEventJsonAndTextShowsOwner)
{
	NetnsNamer namer(NamingRoots{"/nonexistent/proc", "/nonexistent/netns", "/nonexistent/pods"});
	NetnsInfo info;
	info.names = {"blue"};
	info.processes = {{12, "sl\"eep"}};
	info.process_count = 1;
	NetnsNamer::Entry entry;
	entry.info = info;
	entry.label = netns_label(info);
	entry.json = netns_info_json(info);
	entry.json_text = entry.json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
	FormatContext ctx;
	ctx.netns_info = [&](uint32_t ino) { return ino == 4026532300u ? &entry : nullptr; };
	ctct_event e{};
	e.type = CTCT_EV_CONFIRM_DROP;
	e.netns_ino = 4026532300u;
	e.loser.orig.l3num = e.loser.reply.l3num = 2;
	e.loser.orig.protonum = e.loser.reply.protonum = 17;
	std::string line;
	append_event_json_line(line, e, ctx);
	EXPECT_EQ(line, event_json(e, ctx).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
	EXPECT_NE(line.find("\"netns_info\":{\"container\":null,\"host\":false,\"label\":\"netns:blue\""), std::string::npos);
	EXPECT_NE(event_text(e, ctx).find(" netns=4026532300 owner=netns:blue "), std::string::npos);
	e.netns_ino = 1;
	line.clear();
	append_event_json_line(line, e, ctx);
	EXPECT_NE(line.find("\"netns_info\":null"), std::string::npos);
	EXPECT_EQ(event_text(e, ctx).find("owner="), std::string::npos);
}
