"""The sandbox kubelet's pod-worker back-off after a sync error, jittered as the kubelet's."""

from __future__ import annotations

from ocscan.sandbox.kube.kubelet import sync_backoff


def test_jitter_stretches_the_period_by_up_to_half() -> None:
    assert sync_backoff(10.0, draw=lambda: 0.0) == 10.0
    assert sync_backoff(10.0, draw=lambda: 0.5) == 12.5
    assert 14.99 < sync_backoff(10.0, draw=lambda: 0.999) < 15.0


def test_random_delays_stay_within_bounds_and_vary() -> None:
    delays = [sync_backoff(10.0) for _ in range(1000)]
    assert all(10.0 <= delay <= 15.0 for delay in delays)
    assert max(delays) - min(delays) > 4.0
