"""`tapforge track`, `tapforge eval` and `tapforge export` end to end on data made here."""

import csv
import json
import pickle

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from tapforge.base.drawing import OVERLAY_MIN_SIDE
from tapforge.base.errors import TapforgeError
from tapforge.base.video import read_video
from tapforge.cli import main as tapforge
from tapforge.tapir import TAPIR
from tapforge.tapir import checkpoint as ck

NUM_FRAMES, HEIGHT, WIDTH = 6, 48, 64


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    """A randomly initialised TAPIR at 64x64, as a safetensors checkpoint."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return str(ck.save_safetensors(TAPIR(initial_resolution=(64, 64)), path))


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    """An mp4 of a textured square moving right over a noisy background."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 80, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    texture = rng.integers(120, 256, (16, 16, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("video") / "square.mp4"
    writer = imageio_ffmpeg.write_frames(
        str(path), (WIDTH, HEIGHT), fps=10, macro_block_size=1, ffmpeg_log_level="error"
    )
    writer.send(None)
    for t in range(NUM_FRAMES):
        frame = background.copy()
        frame[16:32, 4 + 6 * t : 20 + 6 * t] = texture
        writer.send(frame)
    writer.close()
    return str(path)


def test_track_writes_overlay_and_tracks(tmp_path, checkpoint_file, video_file, capsys):
    out, save = tmp_path / "overlay.mp4", tmp_path / "tracks.npz"
    rc = tapforge(
        ["track", video_file, "--checkpoint", checkpoint_file, "--grid", "3", "--out", str(out), "--save", str(save)]
    )
    assert rc == 0, capsys.readouterr().err
    frames, fps = read_video(out)
    factor = -(-OVERLAY_MIN_SIDE // min(HEIGHT, WIDTH))  # a small video is drawn on enlarged by a whole factor
    assert frames.shape == (NUM_FRAMES, HEIGHT * factor, WIDTH * factor, 3) and fps == pytest.approx(10)
    with np.load(save) as data:
        assert data["tracks"].shape == (9, NUM_FRAMES, 2) and data["occluded"].shape == (9, NUM_FRAMES)
        assert data["occluded"].dtype == bool and data["queries"].shape == (9, 3)
        assert np.isfinite(data["tracks"]).all() and int(data["height"]) == HEIGHT and int(data["width"]) == WIDTH
    assert "wrote" in capsys.readouterr().out


def test_track_points_csv_in_either_column_order(tmp_path, checkpoint_file, video_file):
    points = tmp_path / "points.csv"
    points.write_text("t,y,x\n0,24,12\n2,20,30\n")  # same columns, other order than the docs' t,x,y
    save = tmp_path / "tracks.csv"
    assert (
        tapforge(["track", video_file, "--checkpoint", checkpoint_file, "--points", str(points), "--save", str(save)])
        == 0
    )
    with open(save) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * NUM_FRAMES and set(rows[0]) == {"point", "frame", "x", "y", "occluded", "visibility"}
    npz = tmp_path / "q.npz"
    np.savez(npz, queries=np.array([[2, 20, 30], [0, 24, 12]], np.float32))
    assert (
        tapforge(
            [
                "track",
                video_file,
                "--checkpoint",
                checkpoint_file,
                "--points",
                str(npz),
                "--save",
                str(tmp_path / "b.npz"),
            ]
        )
        == 0
    )
    with np.load(tmp_path / "b.npz") as data:
        np.testing.assert_array_equal(data["queries"], [[2, 20, 30], [0, 24, 12]])


def test_track_errors_are_one_clear_line(tmp_path, checkpoint_file, video_file, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 500)
    assert tapforge(["track", str(broken), "--checkpoint", checkpoint_file, "--out", str(tmp_path / "o.mp4")]) == 2
    assert "cannot decode video" in capsys.readouterr().err

    points = tmp_path / "far.csv"
    points.write_text("t,x,y\n0,10,10\n1,500,10\n9,10,10\n")
    assert (
        tapforge(
            [
                "track",
                video_file,
                "--checkpoint",
                checkpoint_file,
                "--points",
                str(points),
                "--out",
                str(tmp_path / "o.mp4"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "2 query point(s) lie outside" in err and "#1 " in err and "#2 " in err and "#0 " not in err

    state = ck.load_model(checkpoint_file).state_dict()
    state.pop("torch_pips_mixer.linear.bias")
    torch.save(state, tmp_path / "wrong.pt")
    assert (
        tapforge(["track", video_file, "--checkpoint", str(tmp_path / "wrong.pt"), "--out", str(tmp_path / "o.mp4")])
        == 2
    )
    assert "missing keys: torch_pips_mixer.linear.bias" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()

    headerless = tmp_path / "headerless.csv"
    headerless.write_text("0,10,10\n")
    assert (
        tapforge(
            [
                "track",
                video_file,
                "--checkpoint",
                checkpoint_file,
                "--points",
                str(headerless),
                "--save",
                str(tmp_path / "t.npz"),
            ]
        )
        == 2
    )
    assert "header" in capsys.readouterr().err

    flat = tmp_path / "flat.npz"
    np.savez(flat, queries=np.zeros((6, 2)))  # 12 numbers must not be reshaped into 4 queries
    assert (
        tapforge(
            [
                "track",
                video_file,
                "--checkpoint",
                checkpoint_file,
                "--points",
                str(flat),
                "--save",
                str(tmp_path / "t.npz"),
            ]
        )
        == 2
    )
    assert "queries (6, 2)" in capsys.readouterr().err


def test_eval_scores_model_and_stay_put(tmp_path, checkpoint_file, capsys):
    rng = np.random.default_rng(1)
    davis = {}
    for name in ("bear", "car"):
        start = rng.uniform(0.2, 0.6, (3, 1, 2))
        points = (start + np.linspace(0, 0.2, 4)[None, :, None]).astype(np.float32)
        davis[name] = {
            "video": rng.integers(0, 256, (4, 24, 32, 3), dtype=np.uint8),
            "points": points,
            "occluded": np.zeros((3, 4), bool),
        }
    with open(tmp_path / "davis.pkl", "wb") as f:
        pickle.dump(davis, f)
    out = tmp_path / "metrics.json"
    args = ["eval", "--checkpoint", checkpoint_file, "--tapvid-davis", str(tmp_path / "davis.pkl"), "--json", str(out)]
    assert tapforge(args + ["--query-mode", "strided"]) == 0
    printed = capsys.readouterr().out
    assert "stay-put" in printed and "model" in printed and "AJ" in printed
    report = json.loads(out.read_text())["datasets"]["tapvid_davis"]
    assert report["num_videos"] == 2 and report["videos"] == ["bear", "car"] and report["query_mode"] == "strided"
    for method in ("model", "stay_put"):
        assert 0.0 <= report[method]["mean"]["average_jaccard"] <= 1.0
        assert len(report[method]["per_video"]["occlusion_accuracy"]) == 2
    # every point moves 0.2 * 256 / 3 = 17 px per frame, so staying put is never within 16 px after the query
    assert (
        report["stay_put"]["mean"]["pts_within_16"] == 0.0 and report["stay_put"]["mean"]["occlusion_accuracy"] == 1.0
    )
    assert tapforge(["eval", "--checkpoint", checkpoint_file]) == 2
    assert "no dataset given" in capsys.readouterr().err


@pytest.mark.parametrize("fmt,name", [("tapnet-pt", "out.pt"), ("safetensors", "out.safetensors")])
def test_export_weights(tmp_path, checkpoint_file, fmt, name, capsys):
    out = tmp_path / name
    assert tapforge(["export", checkpoint_file, "--to", fmt, "--out", str(out)]) == 0
    assert "max |exported - pytorch| = 0.00e+00" in capsys.readouterr().out
    original = ck.load_model(checkpoint_file)
    overrides = {"initial_resolution": (64, 64)} if fmt == "tapnet-pt" else {}
    reloaded = ck.load_model(out, **overrides)
    assert reloaded.config == original.config
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), reloaded.state_dict().values()))
    assert tapforge(["export", str(tmp_path / "nope.pt"), "--to", fmt, "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_export_refuses_a_tapnet_pt_that_would_lose_the_config(tmp_path, capsys):
    source = tmp_path / "smoke.safetensors"  # cpu_smoke's slimmed TAPIR
    ck.save_safetensors(TAPIR(blocks_per_group=(1, 1, 1, 1), mixer_hidden_dim=64, num_mixer_blocks=2), source)
    out = tmp_path / "smoke.pt"
    assert tapforge(["export", str(source), "--to", "tapnet-pt", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "blocks_per_group=[1, 1, 1, 1] (a tapnet .pt means [2, 2, 2, 2])" in err
    assert "fix: export --to safetensors" in err
    assert not list(tmp_path.glob("smoke.pt*"))  # nothing written, not even a temporary


@pytest.mark.parametrize("grid", ["0", "-3", "1000"])
def test_track_refuses_a_grid_it_would_not_track(tmp_path, checkpoint_file, video_file, capsys, grid):
    out = tmp_path / "o.mp4"
    assert tapforge(["track", video_file, "--checkpoint", checkpoint_file, "--grid", grid, "--out", str(out)]) == 2
    assert f"--grid {grid}: give K in 1..256" in capsys.readouterr().err and not out.exists()


def _davis(path, change=None):
    """A two-video TAP-Vid DAVIS pickle; ``change(example)`` edits the second video."""
    rng = np.random.default_rng(1)
    davis = {}
    for name in ("bear", "car"):
        davis[name] = {
            "video": rng.integers(0, 256, (4, 24, 32, 3), dtype=np.uint8),
            "points": rng.uniform(0.2, 0.8, (3, 4, 2)).astype(np.float32),
            "occluded": np.zeros((3, 4), bool),
        }
    if change:
        change(davis["car"])
    with open(path, "wb") as f:
        pickle.dump(davis, f)
    return str(path)


def _one_error_line(capsys, command):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tapforge {command}: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0], captured.out


def _bad_outputs(tmp_path, suffix):
    """(output path, what the error line says) for each way an output file cannot be written after the work."""
    (tmp_path / f"existing{suffix}").mkdir(exist_ok=True)
    (tmp_path / "afile").write_text("x")
    return [
        (tmp_path / f"existing{suffix}", "is an existing folder"),
        (tmp_path / "afile" / f"out{suffix}", "afile is a file, not a folder"),
        (tmp_path / "afile" / "sub" / f"out{suffix}", "afile is a file, not a folder"),
        (tmp_path / "missing" / f"out{suffix}", "does not exist; fix: create it first"),
    ]


@pytest.mark.parametrize("case", range(4))
@pytest.mark.parametrize(
    "command,flag,suffix",
    [("eval", "--json", ".json"), ("track", "--out", ".mp4"), ("track", "--save", ".npz"), ("export", "--out", ".pt")],
)
def test_an_output_that_could_not_be_written_is_refused_before_the_work(
    tmp_path, checkpoint_file, video_file, capsys, command, flag, suffix, case
):
    out, message = _bad_outputs(tmp_path, suffix)[case]
    argv = {
        "eval": ["eval", "--checkpoint", checkpoint_file, "--tapvid-davis", _davis(tmp_path / "d.pkl")],
        "track": ["track", video_file, "--checkpoint", checkpoint_file, "--grid", "2"],
        "export": ["export", checkpoint_file, "--to", "safetensors"],
    }[command]
    assert tapforge(argv + [flag, str(out)]) == 2
    line, printed = _one_error_line(capsys, command)
    assert f"{flag} {out}" in line and message in line
    assert printed == ""  # nothing was scored, tracked or loaded first


@pytest.mark.parametrize(
    "command,flag",
    [("eval", "--json"), ("track-video", "--out"), ("track-checkpoint", "--save"), ("export", "--out")],
)
def test_an_output_that_is_an_input_is_refused(tmp_path, checkpoint_file, video_file, capsys, command, flag):
    copy = tmp_path / ("in.safetensors" if command != "track-video" else "in.mp4")
    copy.write_bytes(open(checkpoint_file if command != "track-video" else video_file, "rb").read())
    davis = _davis(tmp_path / "d.pkl")
    argv = {
        "eval": ["eval", "--checkpoint", checkpoint_file, "--tapvid-davis", davis, "--json", davis],
        "track-video": ["track", str(copy), "--checkpoint", checkpoint_file, "--out", str(copy)],
        "track-checkpoint": ["track", video_file, "--checkpoint", str(copy), "--save", str(copy)],
        "export": ["export", str(copy), "--to", "safetensors", "--out", str(copy)],
    }[command]
    before = copy.read_bytes()
    assert tapforge(argv) == 2
    line, _ = _one_error_line(capsys, argv[0])
    assert "an input of this command" in line or "unknown suffix" in line
    assert copy.read_bytes() == before


BAD_DAVIS = {
    "float video on a 0..255 scale": (lambda e: e.__setitem__("video", e["video"] * 1.0), "float frames must lie"),
    "NaN point": (lambda e: e["points"].__setitem__((0, 1, 0), np.nan), "NaN or infinite"),
    "pixel coordinates": (lambda e: e.__setitem__("points", e["points"] * 32), "outside [0, 1]"),
    "occlusion flag 2": (lambda e: e.__setitem__("occluded", np.full((3, 4), 2)), "occluded holds 2"),
    "tracks of other length": (lambda e: e.__setitem__("points", e["points"][:, :3]), "do not match 4 frames"),
    "grayscale video": (lambda e: e.__setitem__("video", e["video"][..., 0]), "expected [T,H,W,3]"),
}


@pytest.mark.parametrize("case", sorted(BAD_DAVIS))
def test_eval_refuses_a_bad_pickle_before_scoring_and_writes_nothing(tmp_path, checkpoint_file, capsys, case):
    change, message = BAD_DAVIS[case]
    out = tmp_path / "metrics.json"
    argv = ["eval", "--checkpoint", checkpoint_file, "--tapvid-davis", _davis(tmp_path / "d.pkl", change)]
    assert tapforge(argv + ["--json", str(out)]) == 2
    line, printed = _one_error_line(capsys, "eval")
    assert message in line and "'car'" in line and "AJ" not in printed and not out.exists()


def test_eval_reports_the_re_detection_aj_beside_aj(tmp_path, capsys):
    # static points, so staying put is exact; track 0 is hidden on frames 1 and 3, track 1 never
    occluded = np.zeros((2, 6), bool)
    occluded[0, [1, 3]] = True
    video = {
        "video": np.zeros((6, 16, 16, 3), np.uint8),
        "points": np.repeat(np.array([[[0.25, 0.5]], [[0.75, 0.5]]], np.float32), 6, axis=1),
        "occluded": occluded,
    }
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps({"still": video, "no_gap": {**video, "occluded": np.zeros((2, 6), bool)}}))
    assert tapforge(["eval", "--tapvid-davis", str(path), "--json", str(tmp_path / "m.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if "AJ_RD" in line)
    assert lines[header].split()[:2] == ["AJ", "AJ_RD"] and lines[header + 1].split()[2] == "75.0"
    stay_put = json.loads((tmp_path / "m.json").read_text())["datasets"]["tapvid_davis"]["stay_put"]
    # the eligible re-appearance is frame 2 (frame 4's gap is no longer): frames 2..5 hold 3 visible points, all
    # exact, and frame 3 is predicted visible while hidden: 3 / (3 + 1) at every distance. The video without a
    # gap has none (null), and the mean over videos leaves it out.
    assert stay_put["per_video"]["AJ_RD"] == [0.75, None] and stay_put["mean"]["AJ_RD"] == 0.75
    assert stay_put["per_video"]["AJ_RD_D1_dmin1"] == [0.75, None] and stay_put["mean"]["AJ_RD_dmin4"] is None


def test_eval_runs_long_videos_in_windows_with_the_same_metrics(tmp_path, capsys, monkeypatch):
    from tapforge.tapir.inference import Tracker

    windowed = []
    in_windows = Tracker._track_in_windows
    monkeypatch.setattr(Tracker, "_track_in_windows", lambda *a: windowed.append(1) or in_windows(*a))
    torch.manual_seed(0)
    small = TAPIR(
        initial_resolution=(64, 64), num_pips_iter=1, num_mixer_blocks=1, mixer_hidden_dim=32, blocks_per_group=[1] * 4
    )
    checkpoint = str(ck.save_safetensors(small, tmp_path / "small.safetensors"))  # reach: 2 frames each side
    rng = np.random.default_rng(2)
    occluded = rng.random((4, 20)) < 0.3
    occluded[:, 0] = False
    points = np.clip(0.5 + np.cumsum(rng.normal(0, 0.03, (4, 20, 2)), axis=1), 0.05, 0.95).astype(np.float32)
    path = tmp_path / "d.pkl"
    path.write_bytes(
        pickle.dumps(
            {"long": {"video": rng.integers(0, 256, (20, 32, 32, 3), np.uint8), "points": points, "occluded": occluded}}
        )
    )
    reports = []
    for chunk in ("0", "4"):
        argv = ["eval", "--checkpoint", checkpoint, "--tapvid-davis", str(path), "--device", "cpu"]
        assert tapforge(argv + ["--chunk-frames", chunk, "--json", str(tmp_path / f"{chunk}.json")]) == 0
        reports.append(json.loads((tmp_path / f"{chunk}.json").read_text())["datasets"]["tapvid_davis"]["model"])
    assert windowed == [1]  # --chunk-frames 4 ran the 20 frames in windows, 0 whole
    for key, value in reports[0]["mean"].items():
        assert reports[1]["mean"][key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_eval_scores_a_float_video_in_0_1_as_its_uint8_original(tmp_path, capsys):
    as_uint8 = _davis(tmp_path / "a.pkl")
    as_float = _davis(tmp_path / "b.pkl", lambda e: e.__setitem__("video", e["video"] / 255.0))
    reports = []
    for path in (as_uint8, as_float):
        assert tapforge(["eval", "--tapvid-davis", path, "--json", str(tmp_path / "m.json")]) == 0
        reports.append(json.loads((tmp_path / "m.json").read_text())["datasets"]["tapvid_davis"]["stay_put"])
    assert reports[0] == reports[1]


def test_track_reads_16_bit_grayscale_frames_as_gray_not_white(tmp_path, checkpoint_file, capsys):
    from tests.image_modes import png16

    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(3):
        (frames / f"f{t}.png").write_bytes(png16(np.full((40, 48), 20000 + 1000 * t, np.uint16)))
    save = tmp_path / "tracks.npz"
    out = tmp_path / "overlay.mp4"
    argv = ["track", str(frames), "--checkpoint", checkpoint_file, "--grid", "2", "--save", str(save)]
    assert tapforge(argv + ["--out", str(out)]) == 0, capsys.readouterr().err
    overlay, _ = read_video(out)
    assert abs(int(np.median(overlay[0])) - round(20000 / 257)) <= 2  # gray (78), not clipped to white (255)


def test_export_to_onnx_without_onnx_names_the_extra_before_loading(tmp_path, checkpoint_file, capsys, monkeypatch):
    from tapforge.tapir import cli_export

    real = cli_export.find_spec
    monkeypatch.setattr(cli_export, "find_spec", lambda name: None if name.startswith("onnx") else real(name))
    monkeypatch.setattr(ck, "load_model", lambda *a, **k: pytest.fail("the model was loaded before the check"))
    out = tmp_path / "tapir.onnx"
    assert tapforge(["export", checkpoint_file, "--to", "onnx", "--out", str(out)]) == 2
    line, _ = _one_error_line(capsys, "export")
    assert "needs onnx and onnxruntime, which are not installed" in line and 'pip install "tapforge[onnx]"' in line
    assert tapforge(["export", checkpoint_file, "--to", "onnx", "--out", str(out), "--no-verify"]) == 2
    line, _ = _one_error_line(capsys, "export")
    assert "needs onnx, which is not installed" in line and not out.exists()


def test_export_removes_the_temporaries_a_killed_export_left(tmp_path, checkpoint_file, capsys):
    out = tmp_path / "tapir.safetensors"
    stale = [tmp_path / ".tapir.safetensors.q1w2e3r4.tmp", tmp_path / ".tapir.safetensors.zz_9zz9z.tmp"]
    other = tmp_path / ".other.safetensors.q1w2e3r4.tmp"
    for path in stale + [other]:
        path.write_bytes(b"half a checkpoint")
    assert tapforge(["export", checkpoint_file, "--to", "safetensors", "--out", str(out)]) == 0
    assert not any(p.exists() for p in stale) and other.exists() and out.exists()


BAD_NUMBERS = [  # (flag, value, what the line says after "FLAG VALUE")
    ("--grid", "0", ": give K in 1..256"),
    ("--grid", "257", ": give K in 1..256"),
    ("--grid", "abc", ": not an integer; give K in 1..256"),
    ("--grid", "2.5", ": not an integer"),
    ("--grid-frame", "-1", ": give an integer >= 0"),
    ("--fps", "0", ": give a number > 0 and <= 1000"),
    ("--fps", "-inf", ": not finite"),
    ("--fps", "nan", ": not finite"),
    ("--fps", "1e9", ": give a number > 0 and <= 1000"),
    ("--trail", "-1", ": give an integer >= 0"),
    ("--resolution", "100", ": give an integer (a multiple of 8) in 8..4096"),
    ("--resolution", "0", ": give an integer (a multiple of 8) in 8..4096"),
    ("--query-chunk-size", "0", ": give an integer in 1..1048576"),
    ("--softmax-temperature", "-1e3", ": give a number > 0 and <= 10000"),
    ("--softmax-temperature", "inf", ": not finite"),
    ("--max-videos", "0", ": give an integer >= 1"),
    ("--max-videos", "-5", ": give an integer >= 1"),
    ("--frames", "0", ": give an integer in 1..4096"),
    ("--frames", "1e9", ": not an integer"),
    ("--num-queries", "100000", ": give an integer in 1..65536"),
]
COMMAND_OF = {
    "--max-videos": ["eval", "--tapvid-davis", "d.pkl"],
    "--frames": ["export", "c.pt", "--to", "onnx", "--out", "o.onnx"],
    "--num-queries": ["export", "c.pt", "--to", "onnx", "--out", "o.onnx"],
}


@pytest.mark.parametrize("flag,value,message", BAD_NUMBERS)
def test_every_numeric_flag_is_checked_where_it_is_parsed(tmp_path, capsys, monkeypatch, flag, value, message):
    monkeypatch.chdir(tmp_path)  # nothing exists here: a flag checked later would fail on the missing files instead
    argv = COMMAND_OF.get(flag, ["track", "v.mp4", "--checkpoint", "c.pt", "--out", "o.mp4"])
    values = [value, "256"] if flag == "--resolution" else [value]
    assert tapforge([*argv, flag, *values]) == 2
    line, printed = _one_error_line(capsys, argv[0])
    shown = repr(value) if "not an integer" in message else value  # a value that is not a number is quoted
    assert line.startswith(f"tapforge {argv[0]}: error: {flag} {shown}{message}"), line
    assert printed == ""


def test_number_parses_in_range_and_names_flag_value_and_range():
    from tapforge.base.arguments import Number

    assert Number("--k", int, 1, 8)("8") == 8 and Number("--x", float, 0, above=True)("1e-3") == 1e-3
    assert Number("--r", int, 8, 64, step=8)("16") == 16
    for number, text, message in [
        (Number("--k", int, 1, 8), "9", "--k 9: give an integer in 1..8"),
        (Number("--x", float, 0, 1), "1.5", "--x 1.5: give a number in [0, 1]"),
        (Number("--x", float, 0, above=True), "0", "--x 0: give a number > 0"),
        (Number("--x", float), "-inf", "--x -inf: not finite; give a number"),
        (Number("--k", int, 1), "", "--k '': not an integer; give an integer >= 1"),
    ]:
        with pytest.raises(TapforgeError) as err:
            number(text)
        assert str(err.value) == message


def test_eval_leaves_out_a_video_without_strided_queries_and_says_so(tmp_path, checkpoint_file, capsys):
    def hidden_on_query_frames(example):
        example["occluded"][:, 0] = True  # 4 frames: strided queries are on frame 0 only

    davis = _davis(tmp_path / "d.pkl", hidden_on_query_frames)
    out = tmp_path / "m.json"
    argv = ["eval", "--checkpoint", checkpoint_file, "--tapvid-davis", davis, "--query-mode", "strided"]
    assert tapforge(argv + ["--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 videos, 1 without a visible query point left out" in captured.out and "Warning" not in captured.err
    report = json.loads(out.read_text())["datasets"]["tapvid_davis"]
    assert report["videos"] == ["bear"] and report["videos_without_queries"] == ["car"]
    assert len(report["model"]["per_video"]["average_jaccard"]) == 1


@pytest.fixture(scope="module")
def tapnext_file(tmp_path_factory):
    """A randomly initialised tiny TAPNext at 64x64, as the official JAX .npz lays it out."""
    from tapforge.tapir import TAPNext
    from tapforge.tapir.tapnext_checkpoint import jax_arrays

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tapnext") / "tapnext_ckpt.npz"
    np.savez(path, **jax_arrays(TAPNext(image_size=(64, 64), width=32, num_heads=2, lru_width=32, depth=2)))
    return str(path)


def test_track_and_eval_take_a_tapnext(tmp_path, tapnext_file, video_file, capsys):
    save = tmp_path / "tracks.npz"
    grid = ["--grid", "2", "--grid-frame", "3"]  # queries on frame 3: frames 0-2 are tracked backwards
    assert tapforge(["track", video_file, "--checkpoint", tapnext_file, *grid, "--save", str(save)]) == 0
    with np.load(save) as data:
        assert data["tracks"].shape == (4, NUM_FRAMES, 2) and np.isfinite(data["tracks"]).all()
    capsys.readouterr()
    assert tapforge(["track", video_file, "--checkpoint", tapnext_file, "--causal", "--save", str(save)]) == 2
    assert "is a TAPNext checkpoint, which takes no TAPIR settings (use_casual_conv)" in capsys.readouterr().err
    rng = np.random.default_rng(1)
    davis = {
        "bear": {
            "video": rng.integers(0, 256, (5, 24, 32, 3), dtype=np.uint8),
            "points": rng.uniform(0.2, 0.8, (3, 5, 2)).astype(np.float32),
            "occluded": np.zeros((3, 5), bool),
        }
    }
    with open(tmp_path / "davis.pkl", "wb") as f:
        pickle.dump(davis, f)
    out = tmp_path / "metrics.json"
    args = ["eval", "--checkpoint", tapnext_file, "--tapvid-davis", str(tmp_path / "davis.pkl"), "--json", str(out)]
    assert tapforge(args + ["--query-mode", "strided", "--chunk-frames", "2"]) == 0
    report = json.loads(out.read_text())["datasets"]["tapvid_davis"]
    assert 0.0 <= report["model"]["mean"]["average_jaccard"] <= 1.0 and "AJ_RD" in report["model"]["mean"]


@pytest.mark.parametrize("fmt", ["tapnet-pt", "safetensors", "torchscript", "onnx", "onnx-online"])
def test_export_a_tapnext_verified_against_pytorch(tmp_path, tapnext_file, fmt, capsys):
    if fmt.startswith("onnx"):
        pytest.importorskip("onnxruntime")
    out = tmp_path / f"tapnext.{fmt}"
    to = ["--to", fmt.removesuffix("-online")] + (["--online"] if fmt == "onnx-online" else [])
    assert tapforge(["export", tapnext_file, *to, "--out", str(out), "--frames", "4", "--num-queries", "3"]) == 0
    printed = capsys.readouterr().out
    diff = float(printed.split("max |exported - pytorch| = ")[1].split()[0])
    assert diff <= (0.0 if fmt in ("tapnet-pt", "safetensors") else 1e-3)
    if fmt in ("tapnet-pt", "safetensors"):  # a bare state dict: the official torch TAPNext's keys, config from shapes
        original, reloaded = ck.load_model(tapnext_file), ck.load_model(out)
        assert reloaded.config == original.config
    if fmt == "onnx-online":
        import onnx

        graph = onnx.load(str(out)).graph
        assert [i.name for i in graph.input] == ck.ONLINE_INPUTS and [o.name for o in graph.output] == ck.ONLINE_OUTPUTS
        assert [d.dim_value for d in graph.input[3].type.tensor_type.shape.dim] == [2, 64 + 3, 32]


def test_online_export_is_tapnext_and_onnx_only(tmp_path, checkpoint_file, tapnext_file, capsys):
    out = str(tmp_path / "step.onnx")
    assert tapforge(["export", tapnext_file, "--to", "torchscript", "--online", "--out", out]) == 2
    assert "--online writes an ONNX step graph, not torchscript" in capsys.readouterr().err
    assert tapforge(["export", checkpoint_file, "--to", "onnx", "--online", "--out", out, "--no-verify"]) == 2
    assert "carries TAPNext's recurrent state, and this is a TAPIR" in capsys.readouterr().err
