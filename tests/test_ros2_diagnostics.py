"""Diagnostics levels of the perception node (diagnostic_msgs conventions): the rules alone, then the real node over
the real RMW going STALE -> OK -> WARN (rate collapse) -> ERROR (latency threshold) -> OK -> STALE (camera stopped)."""
import os
import sys
import time

import pytest
from conftest import ros2_test_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "ros2")
sys.path.insert(0, EXAMPLE)
from slt_ros2.params import PERCEPTION  # noqa: E402
from slt_ros2.stats import ERROR, OK, STALE, WARN, Stats, level  # noqa: E402

CFG = {s.name: s.default for s in PERCEPTION}


def period(**kw):
    p = {"received": 30, "processed": 30, "dropped": 0, "lost": 0, "malformed": 0, "errors": 0,
         "latency_p99_ms": 8.0, "fps": 30.0, "silent_s": 0.03}
    p.update(kw)
    return p


@pytest.mark.parametrize("kw,cfg,want,words", [
    ({}, {}, OK, "ok"),
    ({"silent_s": None}, {}, STALE, "no image received yet"),
    ({"silent_s": 4.0}, {}, STALE, "no image for 4.0 s"),
    ({"silent_s": 4.0}, {"stale_timeout": 10.0}, OK, "ok"),
    ({"fps": 2.0, "processed": 2}, {}, WARN, "2.0 results/s < min_fps 5"),
    ({"fps": 2.0}, {"min_fps": 0.0}, OK, "ok"),
    ({"latency_p99_ms": 150.0}, {}, WARN, "latency p99 150.0 ms > latency_warn_ms 100"),
    ({"latency_p99_ms": 1500.0}, {}, ERROR, "latency p99 1500.0 ms > latency_error_ms 1000"),
    ({"latency_p99_ms": float("nan"), "processed": 0, "fps": 0.0}, {"min_fps": 0.0}, OK, "ok"),
    ({"dropped": 20, "lost": 5, "received": 25}, {}, WARN, "25 of 30 frames dropped (83%"),
    ({"dropped": 10}, {}, OK, "ok"),
    ({"malformed": 3}, {}, WARN, "3 malformed frames"),
    ({"errors": 1, "malformed": 1}, {}, ERROR, "1 frames failed in the model; 1 malformed"),
])
def test_level_rules(kw, cfg, want, words):
    lvl, msg = level(period(**kw), {**CFG, **cfg}, "image_raw")
    assert (lvl, words in msg) == (want, True), msg


def test_stats_period_counts_only_the_last_period():
    s = Stats(10)
    s.snapshot()
    assert s.period["silent_s"] is None
    for _ in range(5):
        s.count("received")
        s.add_result(12.0, 3.0, 2.0, 1.0)
    s.count("dropped", 2)
    s.snapshot()
    assert (s.period["received"], s.period["processed"], s.period["dropped"]) == (5, 5, 2)
    assert s.period["latency_p99_ms"] == 12.0 and s.period["silent_s"] < 1.0
    s.snapshot()
    assert (s.period["received"], s.period["processed"]) == (0, 0) and s.period["latency_p99_ms"] != 12.0


rclpy = pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (pip install -r requirements-ros.txt)")
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from slt_ros2.harness import DDS_PROFILE, Proc  # noqa: E402

PID = os.getpid()
DOMAIN = str(1 + (PID + 131) % 200)


@pytest.fixture(scope="module")
def model():
    return ros2_test_model()


def test_diagnostics_go_stale_warn_error_ok_from_the_real_stream(model, tmp_path):
    os.environ.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", FASTDDS_DEFAULT_PROFILES_FILE=DDS_PROFILE)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(DOMAIN))
    lis = rclpy.create_node(f"slt_diag_test_{PID}", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(lis)
    got = []
    topic = f"/d{PID}/diagnostics"
    lis.create_subscription(DiagnosticArray, topic, lambda m: got.append((time.time(), m.status[0])), 10)
    image = f"/d{PID}/image"
    node = Proc("slt_ros2.perception_node", {"model": model, "backend": "torch", "energy_hardware": "none",
                                             "image_topic": image, "result_topic": f"/d{PID}/result",
                                             "diagnostics_topic": topic, "diagnostics_period": 0.25,
                                             "stale_timeout": 1.0, "min_fps": 5.0, "latency_warn_ms": 2000.0,
                                             "latency_error_ms": 5000.0, "drop_warn_ratio": 0.9},
                tmp_path / "node.log", DOMAIN)
    cam = None

    def spin_until(want_level, timeout, what):
        t_end = time.time() + timeout
        while time.time() < t_end:
            ex.spin_once(timeout_sec=0.05)
            if got and got[-1][1].level == want_level:
                print(f"{what}: {got[-1][1].message}")
                return got[-1][1]
            assert node.p.poll() is None, node.text()[-2000:]
        last = got[-1][1] if got else None
        raise AssertionError(f"{what}: no {want_level} within {timeout} s; last {last.level if last else None} "
                             f"{last.message if last else ''}")

    try:
        st = spin_until(DiagnosticStatus.STALE, 60, "node up, no camera")
        assert "no image received yet" in st.message
        cam = Proc("slt_ros2.camera_node", {"topic": image, "source": "fmnist", "count": 20, "loop": True,
                                            "rate": 20.0, "width": 160, "height": 120, "wait_for_subscribers": 1},
                   tmp_path / "camera.log", DOMAIN)
        spin_until(DiagnosticStatus.OK, 30, "camera at 20 Hz")
        cc = AsyncParameterClient(lis, "slt_camera")
        assert cc.wait_for_services(timeout_sec=20)

        def set_param(client, name, value):
            f = client.set_parameters([Parameter(name, value=value)])
            ex.spin_until_future_complete(f, timeout_sec=10)
            assert f.result().results[0].successful, f.result().results[0].reason
        set_param(cc, "rate", 2.0)  # the rate collapses below min_fps 5
        st = spin_until(DiagnosticStatus.WARN, 15, "camera slowed to 2 Hz")
        assert "< min_fps 5" in st.message
        set_param(cc, "rate", 20.0)
        spin_until(DiagnosticStatus.OK, 15, "camera back at 20 Hz")
        pc = AsyncParameterClient(lis, "slt_perception")
        assert pc.wait_for_services(timeout_sec=20)
        set_param(pc, "latency_error_ms", 0.001)  # every frame is now too late
        st = spin_until(DiagnosticStatus.ERROR, 15, "latency above latency_error_ms")
        assert "latency_error_ms 0.001" in st.message
        set_param(pc, "latency_error_ms", 5000.0)
        spin_until(DiagnosticStatus.OK, 15, "threshold restored")
        t_stop = time.time()  # the last frame left at most 1/20 s before this
        assert cam.interrupt() in (0, -2)
        st = spin_until(DiagnosticStatus.STALE, 15, "camera stopped")
        print(f"STALE {time.time() - t_stop:.2f} s after the camera stopped (stale_timeout 1.0 s)")
        assert "no image for" in st.message and time.time() - t_stop >= 0.9
        values = {kv.key: kv.value for kv in st.values}
        assert int(values["frames_processed"]) >= 5 and values["errors"] == "0"
    finally:
        if cam is not None:
            cam.interrupt()
        rc = node.interrupt()
        lis.destroy_node()
        rclpy.try_shutdown(context=ctx)
    assert rc == 0
