"""ROS 2 parameters of the example nodes, over the real RMW (Fast DDS from the PyPI wheels): typed descriptors,
read-only where a change needs a restart, `ros2 param set` (the SetParameters service it calls) rejecting bad values
with a reason and applying good live ones; the shipped yaml and the launch file's arguments cover exactly the
parameters the running nodes declare."""
import importlib.util
import os
import sys
import time

import pytest
import yaml
from conftest import ros2_test_model

rclpy = pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (pip install -r requirements-ros.txt)")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter, parameter_value_to_python  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "ros2")
sys.path.insert(0, EXAMPLE)
from slt_ros2.harness import DDS_PROFILE, PARAMS_FILE, Proc, wait_for  # noqa: E402
from slt_ros2.params import CAMERA, PERCEPTION  # noqa: E402

PID = os.getpid()
DOMAIN = str(1 + (PID + 67) % 200)
NS = f"/p{PID}"


@pytest.fixture(scope="module")
def model():
    return ros2_test_model()


class Client:
    def __init__(self):
        os.environ.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", FASTDDS_DEFAULT_PROFILES_FILE=DDS_PROFILE)
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=int(DOMAIN))
        self.node = rclpy.create_node(f"slt_param_test_{PID}", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)

    def call(self, future, timeout=15.0):
        self.ex.spin_until_future_complete(future, timeout_sec=timeout)
        assert future.done(), "no answer from the parameter service"
        return future.result()

    def params(self, node_name):
        c = AsyncParameterClient(self.node, f"{NS}/{node_name}")
        t_end = time.time() + 60
        while not c.wait_for_services(timeout_sec=0.2):
            self.ex.spin_once(timeout_sec=0.05)
            assert time.time() < t_end, f"{node_name}: parameter services did not come up"
        return c

    def set(self, client, name, value):
        """What `ros2 param set NODE name value` does -> (successful, reason)."""
        r = self.call(client.set_parameters([Parameter(name, value=value)])).results[0]
        return r.successful, r.reason

    def get(self, client, name):
        return parameter_value_to_python(self.call(client.get_parameters([name])).values[0])

    def close(self):
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


@pytest.fixture(scope="module")
def client():
    c = Client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def nodes(model, tmp_path_factory):
    """Both nodes started from the shipped yaml plus overrides, in their own namespace."""
    d = tmp_path_factory.mktemp("params")
    ns = ["-r", f"__ns:={NS}"]
    per = Proc("slt_ros2.perception_node", {"model": model, "backend": "torch", "energy_hardware": "none",
                                            "diagnostics_topic": "diagnostics"},
               d / "node.log", DOMAIN, params_file=PARAMS_FILE, extra_args=ns)
    # a camera that waits for a subscriber nobody makes: it stays up, idle, for the parameter calls
    cam = Proc("slt_ros2.camera_node", {"topic": "unused_image", "wait_for_subscribers": 1, "wait_timeout": 300.0},
               d / "camera.log", DOMAIN, params_file=PARAMS_FILE, extra_args=ns)
    yield per, cam
    assert per.interrupt() == 0, per.text()[-2000:]
    cam.interrupt()


def test_param_set_rejects_bad_values_with_a_reason_and_applies_live_ones(client, nodes):
    per, cam = nodes
    pc = client.params("slt_perception")
    bad = {
        "crop": ("bogus", "crop must be one of none, center"),
        "interpolation": ("cubic", "interpolation must be one of area, nearest, linear"),
        "model": ("/nonexistent", "read-only"),
        "qos_depth": (50, "read-only"),
        "backend": ("onnx", "read-only"),
        "max_pixels": (0, "range"),
        "drop_warn_ratio": (1.5, "range"),
        "diagnostics_period": ("fast", "type"),
    }
    for name, (value, words) in bad.items():
        before = client.get(pc, name)
        ok, reason = client.set(pc, name, value)
        print(f"ros2 param set slt_perception {name} {value!r}: successful={ok} reason={reason!r}")
        assert not ok, f"{name}={value!r} was accepted"
        assert words.lower() in reason.lower(), f"{name}: reason {reason!r} does not say {words!r}"
        assert client.get(pc, name) == before, f"{name} changed although rejected"
    assert per.p.poll() is None

    # good live values: stored and applied (the node logs it; the diagnostics period visibly changes)
    assert client.set(pc, "crop", "none") == (True, "")
    assert client.get(pc, "crop") == "none"
    assert client.set(pc, "stale_timeout", 7) == (True, "")  # an integer for a float: taken as 7.0
    assert client.get(pc, "stale_timeout") == 7.0
    diags = []
    client.node.create_subscription(DiagnosticArray, f"{NS}/diagnostics", lambda m: diags.append(time.time()), 10)

    def rate(seconds=2.0):
        t0 = time.time()
        while time.time() - t0 < seconds:
            client.ex.spin_once(timeout_sec=0.05)
        return len([t for t in diags if t >= t0]) / seconds
    rate(1.5)  # discovery
    slow = rate()
    assert client.set(pc, "diagnostics_period", 0.1) == (True, "")
    rate(0.5)
    fast = rate()
    print(f"diagnostics: {slow:.1f}/s at the yaml's period 1.0 s, {fast:.1f}/s after setting 0.1 s")
    assert slow <= 2.0 and fast >= 5.0
    wait_for(lambda: "parameters set: crop='none'" in per.text() and "diagnostics_period=0.1" in per.text(), 10,
             "the node to log the applied parameters")

    cc = client.params("slt_camera")
    assert client.set(cc, "rate", 12) == (True, "")
    assert client.get(cc, "rate") == 12.0
    ok, reason = client.set(cc, "encoding", "yuv422")
    assert not ok and "read-only" in reason
    ok, reason = client.set(cc, "rate", -1.0)
    assert not ok and "range" in reason.lower()

    # descriptors as `ros2 param describe` shows them
    descs = {d.name: d for d in client.call(pc.describe_parameters(["crop", "qos_depth", "latency_warn_ms"])).descriptors}
    assert not descs["crop"].read_only and "one of: none, center" in descs["crop"].additional_constraints
    assert descs["qos_depth"].read_only and descs["qos_depth"].integer_range[0].from_value == 1
    assert descs["latency_warn_ms"].floating_point_range[0].to_value > 0 and descs["latency_warn_ms"].description


def test_yaml_and_launch_arguments_cover_the_declared_parameters(client, nodes):
    declared = {}
    for name in ("slt_perception", "slt_camera"):
        c = client.params(name)
        names = [n for n in client.call(c.list_parameters()).result.names if n not in ("use_sim_time",)
                 and not n.startswith("qos_overrides.") and n != "start_type_description_service"]
        values = client.call(c.get_parameters(names)).values
        declared[name] = {n: parameter_value_to_python(v) for n, v in zip(names, values)}
    assert set(declared["slt_perception"]) == {s.name for s in PERCEPTION}
    assert set(declared["slt_camera"]) == {s.name for s in CAMERA}

    with open(PARAMS_FILE) as f:
        shipped = yaml.safe_load(f)
    for name, params in declared.items():
        got = shipped[name]["ros__parameters"]
        assert set(got) == set(params), f"{name}: yaml {sorted(set(got) ^ set(params))} differ from the node"
        for k, v in got.items():
            assert type(v) is type(params[k]), f"{name}.{k}: yaml {v!r} vs declared {params[k]!r}"
    # the nodes really started from the yaml: a value only the yaml sets
    assert declared["slt_perception"]["diagnostics_topic"] == "diagnostics"  # override wins over the yaml

    spec = importlib.util.spec_from_file_location("slt_launch", os.path.join(EXAMPLE, "launch",
                                                                              "slt_perception.launch.py"))
    launch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch)
    args = {n: d for n, d, _ in launch.declared_arguments()}
    want = {"params_file", "use_camera"} | set(declared["slt_perception"]) | {
        "camera_" + n for n in declared["slt_camera"]}
    assert set(args) == want, f"launch arguments differ: {sorted(set(args) ^ want)}"
    assert os.path.samefile(args["params_file"], PARAMS_FILE)
    per, cam = launch.node_parameters({"model": "/m.onnx", "qos_depth": "3", "image_topic": "/cam/image",
                                       "camera_rate": "10", "camera_loop": "true", "crop": ""})
    assert per == {"model": "/m.onnx", "qos_depth": 3, "image_topic": "/cam/image"}
    assert cam == {"rate": 10.0, "loop": True, "topic": "/cam/image", "qos_depth": 3}
    for bad in ({"qos_depth": "three"}, {"crop": "bogus"}, {"camera_rate": "-5"}):
        with pytest.raises(ValueError, match="launch argument"):
            launch.node_parameters(bad)


@pytest.mark.parametrize("param,words", [("crop:=bogus", "crop must be one of none, center"),
                                         ("qos_depth:=many", "qos_depth must be a int"),
                                         ("min_fps:=-3.0", "min_fps must be in")])
def test_bad_start_up_parameter_is_a_one_line_error(model, tmp_path, param, words):
    k, v = param.split(":=")
    p = Proc("slt_ros2.perception_node", {"model": model, k: v}, tmp_path / "bad.log", DOMAIN)
    try:
        rc = p.p.wait(60)
    finally:
        p.log.close()
    assert rc == 2, p.text()
    assert "error: parameter " + words in p.text() and "fix:" in p.text() and "Traceback" not in p.text()
