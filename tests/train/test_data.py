"""Training data path: shard lists, query sampling, resampled batches, corrupt shards, eval sets."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from tapforge.base.errors import TapforgeError
from tapforge.synth.schema import encode_clip
from tapforge.tapir import tapvid
from tapforge.train.data import TAPIRDataModule, TrainClipStream
from tapforge.train.dataset import ShardDataset, UnusableClip, make_training_example
from tapforge.train.evaluation import MetricAccumulator, SyntheticEvalSet, TapVidEvalSet, TapVidPaths
from tapforge.train.procedural import make_clip, write_shards
from tapforge.train.readers import Reader
from tapforge.train.sampling import balanced_counts, object_counts, sample_queries, subclip_indices
from tapforge.train.shards import CorruptShardHandler, expand_shards, read_samples

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    write_shards(
        str(out),
        num_clips=12,
        clips_per_shard=2,
        seed=1,
        num_frames=10,
        size=(32, 32),
        num_objects=2,
        points_per_object=12,
        background_points=16,
    )
    return str(out)


def test_expand_shards_folder_glob_brace_and_errors(shard_dir):
    every = expand_shards(shard_dir)
    assert len(every) == 6 and every == sorted(every)
    assert expand_shards(os.path.join(shard_dir, "shard-00000[0-2].tar")) == every[:3]
    assert expand_shards(os.path.join(shard_dir, "shard-{000004..000005}.tar")) == every[4:]
    assert expand_shards([every[1], shard_dir]) == [every[1]] + every
    assert expand_shards("https://example.com/shard-{000000..000002}.tar") == [
        f"https://example.com/shard-00000{i}.tar" for i in range(3)
    ]
    with pytest.raises(TapforgeError, match="data.val_shards"):
        expand_shards(os.path.join(shard_dir, "nothing-*.tar"), "data.val_shards")
    with pytest.raises(TapforgeError, match="data.train_shards is empty"):
        expand_shards([])


def test_balanced_counts_gives_small_objects_all_they_have():
    assert balanced_counts(np.array([2, 100, 100]), 90).tolist() == [2, 44, 44]
    assert balanced_counts(np.array([50, 3, 50, 50]), 40).tolist() == [12, 3, 12, 13]
    assert balanced_counts(np.array([1, 2]), 10).tolist() == [1, 2]


def test_queries_are_visible_balanced_and_spread_over_the_clip():
    rng = np.random.default_rng(0)
    frames, per_object = 24, 60
    object_ids = np.repeat(np.arange(4), per_object)  # background + 3 objects
    occluded = rng.random((4 * per_object, frames)) < 0.5
    occluded[:5] = True  # never visible: must never be chosen
    rows, query_frame = sample_queries(occluded, object_ids, 128, rng)
    assert len(rows) == 128 and len(set(rows.tolist())) == 128
    assert not occluded[rows, query_frame].any()
    assert not np.isin(rows, np.arange(5)).any()
    assert np.bincount(object_ids[rows], minlength=4).tolist() == [32, 32, 32, 32]
    thirds = np.bincount(query_frame * 3 // frames, minlength=3)
    assert thirds.min() >= 30  # stratified: close to 128 / 3 each
    # fewer usable tracks than queries: tracks repeat, still visible at the query frame
    rows, query_frame = sample_queries(occluded[:20], object_ids[:20], 64, rng)
    assert len(rows) == 64 and not occluded[rows, query_frame].any()
    assert sample_queries(np.ones((5, 4), bool), np.zeros(5, int), 8, rng) is None


def test_background_share_gives_the_background_its_share_and_passes_on_what_it_lacks():
    rng = np.random.default_rng(0)
    object_ids = np.repeat(np.arange(4), [200, 60, 60, 3])  # background + 3 objects, one tiny
    occluded = np.zeros((len(object_ids), 8), bool)
    rows, _ = sample_queries(occluded, object_ids, 64, rng, background_share=0.5)
    assert np.bincount(object_ids[rows], minlength=4).tolist() == [32, 14, 15, 3]
    rows, _ = sample_queries(occluded, object_ids, 64, rng, background_share=None)  # Kubric: one share each
    assert np.bincount(object_ids[rows], minlength=4).tolist() == [21, 20, 20, 3]
    few = np.repeat(np.arange(3), [10, 60, 60])  # too little background: the objects take the rest
    rows, _ = sample_queries(occluded[:130], few, 64, rng, background_share=0.5)
    assert np.bincount(few[rows], minlength=3).tolist() == [10, 27, 27]
    objects_only = np.repeat(np.arange(3), [200, 5, 5])  # objects too small: the background takes the rest
    assert object_counts(np.bincount(objects_only), np.arange(3) == 0, 64, 0.25).tolist() == [54, 5, 5]


def test_subclip_uses_fitting_strides_only():
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = subclip_indices(10, 4, [1, 3, 5], rng)
        assert idx[-1] < 10 and len(set(np.diff(idx).tolist())) == 1 and np.diff(idx)[0] in (1, 3)
    assert subclip_indices(3, 4, [1], rng) is None


def test_training_example_tracks_match_the_clip(shard_dir):
    rng = np.random.default_rng(0)
    clip = make_clip(rng, "k", num_frames=10, size=(32, 32))
    example = make_training_example(encode_clip(clip), 6, [1], 16, rng, frame_size=(48, 64))
    assert example["video"].shape == (6, 48, 64, 3)
    assert example["tracks"].shape == (16, 6, 2) and example["occluded"].shape == (16, 6)
    assert not example["occluded"][np.arange(16), example["query_frame"]].any()
    assert example["tracks"][..., 0].max() > 32  # scaled with the resize (x by 2, y by 1.5)
    with pytest.raises(UnusableClip, match="data.num_frames=12"):
        make_training_example(encode_clip(clip), 12, [1], 16, rng)


def stream(urls, on_corrupt="skip", num_frames=6, **kw):
    args = dict(batch_size=2, epoch_length=5, shuffle_buffer=4)
    args.update(kw)
    dataset = ShardDataset(urls, num_frames=num_frames, frame_strides=[1, 2], num_queries=16, on_corrupt=on_corrupt)
    return TrainClipStream(dataset, **args)


def test_every_rank_gets_epoch_length_batches_from_its_own_shards(shard_dir):
    urls = expand_shards(shard_dir)
    keys = {}
    for rank in (0, 1):
        loader = DataLoader(
            stream(urls, rank=rank, world_size=2), batch_size=None, num_workers=2, persistent_workers=True
        )
        assert len(loader) == 5
        for _ in range(2):
            batches = list(loader)
            assert len(batches) == 5
        batch = batches[0]
        assert batch.video.shape == (2, 6, 32, 32, 3) and batch.video.dtype == torch.uint8
        assert batch.tracks.shape == (2, 16, 6, 2) and batch.occluded.shape == (2, 16, 6)
        visible_at_query = ~batch.occluded.gather(-1, batch.query_frame[..., None])
        assert visible_at_query.all()
        keys[rank] = {k for b in batches for k in b.keys}
    assert keys[0] and keys[1] and not keys[0] & keys[1]  # 6 shards over 2 ranks x 2 workers: disjoint


def test_readers_split_the_sources_and_the_epoch_and_draw_from_their_own_streams():
    items = [f"s{i}" for i in range(10)]
    readers = [Reader("synthetic", 7, rank, 2, worker, 3) for rank in range(2) for worker in range(3)]
    shares = [reader.share(items) for reader in readers]
    assert sorted(sum(shares, [])) == sorted(items)  # every source once, split by rank then worker
    assert shares[0] == ["s0", "s6"] and shares[3] == ["s3", "s9"]
    assert Reader("synthetic", 7, 0, 4, 0, 4).share(items[:3]) == items[:3]  # fewer sources than readers: all
    for rank in range(2):
        assert sum(r.batches(10) for r in readers if r.rank == rank) == 10  # the rank's workers: exactly 10
    draws = [tuple(r.rng("clips").integers(0, 2**31, 4)) for r in readers]
    assert len(set(draws)) == len(readers)  # no two readers replay each other's numbers
    assert draws[0] == tuple(Reader("synthetic", 7, 0, 2, 0, 3).rng("clips").integers(0, 2**31, 4))
    assert readers[0].rng("clips").random() != Reader("real", 7, 0, 2, 0, 3).rng("clips").random()
    assert readers[0].seed_int("shards") != readers[0].seed_int("shuffle")


def write_corrupt_shards(folder, good_urls):
    os.makedirs(folder, exist_ok=True)
    with open(good_urls[0], "rb") as f:
        data = f.read()
    with open(os.path.join(folder, "shard-000000.tar"), "wb") as f:
        f.write(data[: len(data) // 2 + 100])  # truncated in the middle
    with open(os.path.join(folder, "shard-000001.tar"), "wb") as f:
        f.write(b"this is not a tar file at all" * 50)
    sample = encode_clip(make_clip(np.random.default_rng(5), "bad", num_frames=8, size=(32, 32)))
    sample["tracks.npy"] = b"\x93NUMPY garbage"
    broken_frames = encode_clip(make_clip(np.random.default_rng(6), "frames", num_frames=8, size=(32, 32)))
    broken_frames.update({k: b"not an image" for k in broken_frames if k.startswith("video.")})
    with wds.TarWriter(os.path.join(folder, "shard-000002.tar")) as sink:
        sink.write(sample)
        sink.write(broken_frames)
    return expand_shards(folder) + good_urls[1:2]


def test_corrupt_shards_are_skipped_and_counted(shard_dir, tmp_path):
    urls = write_corrupt_shards(str(tmp_path / "bad"), expand_shards(shard_dir))
    batches = list(stream(urls, epoch_length=20, shuffle_buffer=6))
    assert len(batches) == 20
    counts = np.array([list(b.counts.totals().values()) for b in batches])
    assert (np.diff(counts, axis=0) >= 0).all(), "running counts went down"
    bad_shards, bad_samples = batches[-1].counts.bad_shards, batches[-1].counts.bad_samples
    # each once, however often it is drawn: the truncated shard and the non-tar; the two broken samples and
    # the truncated shard's cut-off last sample
    assert (bad_shards, bad_samples) == (2, 3)


def test_corrupt_shard_is_fatal_when_configured(shard_dir, tmp_path):
    urls = write_corrupt_shards(str(tmp_path / "bad"), expand_shards(shard_dir))
    with pytest.raises(TapforgeError, match="on_corrupt=skip"):
        list(stream(urls, epoch_length=20, on_corrupt="fail"))


def test_unusable_clips_stop_with_a_clear_error(shard_dir, tmp_path):
    with pytest.raises(TapforgeError, match="data.num_frames"):
        list(stream(expand_shards(shard_dir), num_frames=30, max_consecutive_skips=10))
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"junk" * 100)
    with pytest.raises(TapforgeError, match="in a row failed"):
        list(stream([str(junk)], max_consecutive_skips=5))


def test_a_window_longer_than_a_rendered_folders_clips_is_refused_at_setup(shard_dir, tmp_path):
    write_shards(str(tmp_path), num_clips=2, clips_per_shard=1, num_frames=10, size=(16, 16), num_objects=1)
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {"scene": {"num_frames": 10}}, "shards": []}))

    def setup(shards=str(tmp_path), **kwargs):
        TAPIRDataModule(shards, num_workers=0, **kwargs).setup("fit")

    with pytest.raises(TapforgeError) as info:
        setup(num_frames=11)
    assert str(info.value) == (
        f"data.train_shards: the clips in {tmp_path} have 10 frames (its manifest.json), fewer than a training window "
        "of data.num_frames=11 at stride 1 (11 frames); fix: lower data.num_frames to at most 10, or train on longer "
        "clips"
    )
    with pytest.raises(TapforgeError, match=r"at stride 2 \(11 frames\).* at most 5 or data.frame_strides"):
        setup(f"{tmp_path}/shard-*.tar", num_frames=6, frame_strides=[3, 2])  # a glob inside the folder too
    setup(num_frames=10)  # windows that fit, at the smallest stride
    setup(num_frames=6, frame_strides=[1, 2])
    setup(shard_dir, num_frames=30)  # no manifest: known only when the clips are read (the error above)


@pytest.mark.parametrize(
    "kwargs,key",
    [
        (dict(batch_size=0), "data.batch_size"),
        (dict(num_queries=-3), "data.num_queries"),
        (dict(frame_strides=[0]), "data.frame_strides"),
        (dict(on_corrupt="ignore"), "data.on_corrupt"),
        (dict(query_modes=["first", "random"]), "data.query_modes"),
        (dict(resolution=(4, 4)), "data.resolution"),
        (dict(background_share=1.5), "data.background_share"),
    ],
)
def test_bad_data_config_names_the_key(kwargs, key):
    with pytest.raises(TapforgeError, match=key.replace(".", r"\.")):
        TAPIRDataModule(**kwargs)


def tiny_tapvid_pickle(path, num_videos=3):
    rng = np.random.default_rng(0)
    data = {}
    for i in range(num_videos):
        points = rng.random((5, 7, 2)).astype(np.float32)
        occluded = rng.random((5, 7)) < 0.3
        occluded[:, 0] = False
        data[f"video{i}"] = {
            "video": rng.integers(0, 255, (7, 24, 40, 3), dtype=np.uint8),
            "points": points,
            "occluded": occluded,
        }
    with open(path, "wb") as f:
        pickle.dump(data, f)


def test_eval_sets_split_videos_over_ranks_exactly_once(shard_dir, tmp_path):
    pkl = tmp_path / "tapvid_davis.pkl"
    tiny_tapvid_pickle(pkl)
    seen = []
    for rank in (0, 1):
        for batch in TapVidEvalSet(str(pkl), "davis", ["first", "strided"], (32, 32), rank=rank, world_size=2):
            assert batch.video.shape == (1, 7, 32, 32, 3)
            assert batch.query_points.shape[1] == batch.target_points.shape[1] == batch.occluded.shape[1]
            seen.append((batch.set_name, batch.name))
    assert sorted(seen) == sorted((f"davis_{m}", f"video{i}") for i in range(3) for m in ("first", "strided"))

    urls = expand_shards(shard_dir)
    names = [b.name for r in (0, 1) for b in SyntheticEvalSet(urls, "synthetic", ["first"], (24, 24), 10, None, r, 2)]
    assert sorted(names) == sorted(f"clip001_{i:06d}" for i in range(12))
    batch = next(iter(SyntheticEvalSet(urls, "synthetic", ["strided"], (24, 24), max_tracks=10)))
    assert batch.video.shape[2:4] == (24, 24) and batch.target_points.shape[-2:] == (10, 2)
    q = batch.query_points[0]
    assert (q[:, 0] % 5 == 0).all()
    assert not batch.occluded[0, torch.arange(q.shape[0]), q[:, 0].long()].any()


def test_missing_tapvid_paths_are_skipped_with_a_message(tmp_path, caplog):
    pkl = tmp_path / "davis.pkl"
    tiny_tapvid_pickle(pkl, 1)
    paths = TapVidPaths(davis=str(pkl), kinetics=str(tmp_path / "nope"))
    with caplog.at_level("WARNING"):
        assert paths.items() == [("davis", str(pkl))]
    assert "data.tapvid.kinetics" in caplog.text and "skipped" in caplog.text


def test_metric_reduction_over_ranks_is_the_mean_over_videos():
    rng = np.random.default_rng(0)
    per_video = []
    for _ in range(5):
        gt_occ = rng.random((1, 6, 8)) < 0.3
        gt_occ[..., 0] = False
        gt = rng.random((1, 6, 8, 2)) * 20
        query = np.concatenate([np.zeros((1, 6, 1)), gt[:, :, 0, ::-1]], axis=-1)
        pred = gt + rng.normal(0, 3, gt.shape)
        args = (query, gt_occ, gt, rng.random((1, 6, 8)) < 0.3, pred, "first")
        aj_rd = tapvid.compute_redetection_metrics(*args)["AJ_RD"]  # validation logs AJ_RD beside AJ
        per_video.append({**tapvid.compute_tapvid_metrics(*args), "AJ_RD": aj_rd})
    ranks = [MetricAccumulator(), MetricAccumulator()]
    for i, metrics in enumerate(per_video):
        ranks[0 if i < 4 else 1].add("synthetic_first", metrics)  # uneven split over ranks
    ranks[1].add("davis_first", per_video[0])  # a set of which rank 0 saw no video

    def gather_names(local):  # what all_gather_object gives across the two processes
        return [name for r in ranks for name in sorted(r.rows)]

    def all_reduce_sum(local):  # what the strategy's sum-reduce does across the two processes
        names = sorted(set(gather_names(None)))
        return sum(r.packed(names) for r in ranks)

    reduced = ranks[0].reduce(all_reduce_sum, gather_names)
    expected = tapvid.mean_metrics(per_video)
    assert reduced["synthetic_first/num_videos"] == 5 and reduced["davis_first/num_videos"] == 1
    assert "AJ_RD" in expected
    for key, value in expected.items():
        assert reduced[f"synthetic_first/{key}"] == pytest.approx(value)


def test_remote_shards_through_fsspec(shard_dir):
    import fsspec

    fs = fsspec.filesystem("memory")
    for path in expand_shards(shard_dir)[:2]:
        with open(path, "rb") as src, fs.open(f"/bucket/{os.path.basename(path)}", "wb") as dst:
            dst.write(src.read())
    urls = expand_shards("memory://bucket/shard-*.tar")
    assert [u.startswith("memory://") and u.endswith(f"shard-00000{i}.tar") for i, u in enumerate(urls)] == [True, True]
    batches = list(stream(urls, epoch_length=2))
    assert len(batches) == 2 and (batches[-1].counts.bad_shards, batches[-1].counts.bad_samples) == (0, 0)


def test_the_data_module_streams_the_plain_datasets_examples(shard_dir):
    """One path: ``tapforge train`` batches are `ShardDataset.example` of the data module's settings."""
    dm = TAPIRDataModule(shard_dir, batch_size=2, num_frames=5, num_queries=8, frame_size=(40, 48), num_workers=0)
    dm.setup("fit")
    train_stream = dm.train_dataloader().dataset
    dataset = train_stream.dataset
    assert isinstance(dataset, ShardDataset) and dataset.frame_size == (40, 48) and dataset.num_frames == 5
    batch = next(iter(train_stream))
    assert batch.video.shape == (2, 5, 40, 48, 3) and batch.tracks.shape == (2, 8, 5, 2)
    sample = next(iter(read_samples(dataset.urls[:1], CorruptShardHandler("fail"))))
    one, two = (dataset.example(sample, np.random.default_rng(3)) for _ in range(2))
    assert one["video"].shape == (5, 40, 48, 3) and np.array_equal(one["tracks"], two["tracks"])
