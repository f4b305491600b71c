from worker.pipeline.progress import STAGE_WEIGHTS, overall


def test_overall_progress_moves_through_the_stages_monotonically():
    points = [overall(stage, done, 10) for stage in STAGE_WEIGHTS for done in range(11)]
    assert points == sorted(points)
    assert points[0] == 0.0 and abs(points[-1] - 1.0) < 1e-9
    assert abs(overall("embedding", 5, 10) - STAGE_WEIGHTS["embedding"] / 2) < 1e-9
