"""Data formats, the decode cache, subsets, download, and every bad input the issue lists."""

from __future__ import annotations

import ast
import hashlib
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lab.errors import LabError
from lab.train import data as data_module
from lab.train.data import (
    OFFICIAL_MD5,
    DownloadFailed,
    balanced_subset,
    detect_format,
    download_cifar,
    find_or_fetch_data,
    load_cifar,
    source_fingerprint,
)
from tests.conftest import (
    NO_DATA_REQUESTED,
    REPO,
    assert_one_line_error,
    call_cli,
    data_or_skip,
    find_test_data,
)

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def test_real_image_folder_decodes_to_cifar10(real_cifar):
    assert real_cifar.train_images.shape == (50_000, 32, 32, 3)
    assert real_cifar.test_images.shape == (10_000, 32, 32, 3)
    assert real_cifar.train_images.dtype == np.uint8
    assert real_cifar.classes == CLASSES
    assert np.bincount(real_cifar.train_labels).tolist() == [5000] * 10
    # The per-channel means of CIFAR-10 that the normalisation constants come from.
    means = real_cifar.train_images.reshape(-1, 3).mean(axis=0) / 255
    assert means == pytest.approx([0.4914, 0.4822, 0.4465], abs=0.005)


def test_second_load_comes_from_the_cache_without_decoding(real_cifar, real_data_path, monkeypatch):
    """A hit reads the cached arrays and decodes nothing. (How long a load takes is measured
    and printed by every job, `data: ... loaded in N s`, not bounded here.)"""

    def no_decoding(*args, **kwargs):
        raise AssertionError("the source was decoded again")

    for reader in ("_read_folder", "_read_python", "decode_image"):
        monkeypatch.setattr(data_module, reader, no_decoding)
    again = load_cifar(real_data_path, progress=False)
    assert again.cache_hit and again.decode_s == 0.0
    assert again.fingerprint == real_cifar.fingerprint
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert np.array_equal(getattr(again, name), getattr(real_cifar, name)), name
    assert again.classes == real_cifar.classes


def _copy_small_tree(source: Path, target: Path, per_class: int = 2) -> Path:
    for split in ("train", "test"):
        for name in CLASSES:
            (target / split / name).mkdir(parents=True)
            for path in sorted((source / split / name).iterdir())[:per_class]:
                shutil.copy2(path, target / split / name / path.name)
    return target


def test_cache_key_changes_when_a_file_changes(real_data_path, tmp_path):
    tree = _copy_small_tree(real_data_path, tmp_path / "tree")
    before = source_fingerprint("folder", tree)
    image = next((tree / "train" / "cat").iterdir())
    Image.new("RGB", (32, 32), (255, 0, 0)).save(image, format="JPEG")
    assert source_fingerprint("folder", tree) != before
    loaded = load_cifar(tree, cache_dir=tmp_path / "cache", progress=False)
    assert not loaded.cache_hit and loaded.train_images.shape == (20, 32, 32, 3)


def test_balanced_subset_is_deterministic_and_balanced(real_cifar):
    first = balanced_subset(real_cifar.train_labels, 1000, seed=0)
    assert np.array_equal(first, balanced_subset(real_cifar.train_labels, 1000, seed=0))
    assert not np.array_equal(first, balanced_subset(real_cifar.train_labels, 1000, seed=1))
    assert np.bincount(real_cifar.train_labels[first]).tolist() == [100] * 10
    assert len(balanced_subset(real_cifar.train_labels, 1005, seed=0)) == 1005


# ----------------------------------------------------------------------------- python version


def write_python_version(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """A `cifar-10-batches-py` folder in the original layout, from real images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # channel-major rows
    parts = np.array_split(np.arange(len(images)), 6)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, part in zip(names, parts, strict=True):
        batch = {
            b"data": rows[part],
            b"labels": labels[part].tolist(),
            b"batch_label": name.encode(),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [name.encode() for name in CLASSES]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


@pytest.fixture
def python_version(real_cifar, tmp_path):
    index = balanced_subset(real_cifar.train_labels, 120, seed=0)
    images, labels = real_cifar.train_images[index], real_cifar.train_labels[index]
    return write_python_version(tmp_path / "src", images, labels), images, labels


def test_python_version_reads_the_same_pixels(python_version, tmp_path):
    folder, images, labels = python_version
    assert detect_format(folder.parent) == ("python", folder)
    data = load_cifar(folder.parent, cache_dir=tmp_path / "cache", progress=False)
    assert data.classes == CLASSES
    all_images = np.concatenate([data.train_images, data.test_images])
    assert np.array_equal(all_images, images)
    assert np.array_equal(np.concatenate([data.train_labels, data.test_labels]), labels)


@pytest.fixture
def tiny_archive(tmp_path) -> tuple[Path, str, np.ndarray]:
    """A `cifar-10-python.tar.gz` laid out like the official one (5 train images and 1 test
    image per class, seeded pixels), its MD5, and its images."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(60) % 10
    folder = write_python_version(tmp_path / "archive-src", images, labels)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest(), images


def test_download_verifies_md5_and_extracts(tiny_archive, tmp_path):
    archive, md5, images = tiny_archive
    cache = tmp_path / "dl-cache"
    target = download_cifar(cache, url=archive.as_uri(), md5=md5)
    assert target == cache / "cifar-10-batches-py"
    loaded = load_cifar(target, cache_dir=cache, progress=False)
    assert np.array_equal(np.concatenate([loaded.train_images, loaded.test_images]), images)
    with pytest.raises(LabError, match="MD5"):
        download_cifar(tmp_path / "other", url=archive.as_uri(), md5="0" * 32)
    assert not (tmp_path / "other" / "cifar-10-batches-py").exists()


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch) -> Path:
    """A checkout with nothing beside it, no $LAB_DATA, and an empty cache."""
    clone = tmp_path / "clone" / "lab"
    clone.mkdir(parents=True)
    monkeypatch.setattr(data_module, "REPO_ROOT", clone)
    monkeypatch.delenv("LAB_DATA", raising=False)
    cache = tmp_path / "newcomer-cache"
    monkeypatch.setenv("LAB_CACHE", str(cache))
    return cache


def test_a_newcomer_without_data_gets_the_archive_downloaded(tiny_archive, fresh_clone, tmp_path):
    """No --data, no $LAB_DATA, nothing at the default places: the archive is fetched into the
    cache with its MD5 checked, and the user is told (a local file:// archive, no internet)."""
    archive, md5, _ = tiny_archive
    cache = fresh_clone
    said = []
    path = find_or_fetch_data(None, url=archive.as_uri(), md5=md5, say=said.append)
    assert path == cache / "cifar-10-batches-py"
    assert len(said) == 1 and "no CIFAR-10 found" in said[0] and "downloading" in said[0]
    assert len(load_cifar(path, cache_dir=cache, progress=False).train_labels) == 50
    # A named folder is never replaced by a download, even a missing one.
    assert find_or_fetch_data(str(tmp_path / "named"), say=said.append) == tmp_path / "named"


def test_the_tests_find_data_by_the_labs_download_on_a_fresh_clone(
    tiny_archive, fresh_clone, monkeypatch
):
    """tests/conftest.py's fallback: with nothing beside the checkout the tests get their data
    from the lab's download (here the official URL and MD5 pointed at a file:// archive):
    fetched, MD5-checked, unpacked into the cache and loaded; the next session finds it there."""
    archive, md5, images = tiny_archive
    cache = fresh_clone
    with pytest.raises(LabError, match="no CIFAR-10 found .* MD5") as wrong:
        find_test_data(url=archive.as_uri(), md5="0" * 32)
    assert not isinstance(wrong.value, DownloadFailed)  # a wrong archive fails, never skips
    assert not (cache / "cifar-10-batches-py").exists()
    path = find_test_data(url=archive.as_uri(), md5=md5)
    assert path == cache / "cifar-10-batches-py"
    loaded = load_cifar(path, progress=False)
    assert loaded.source == str(path.resolve()) and not loaded.cache_hit
    assert np.array_equal(np.concatenate([loaded.train_images, loaded.test_images]), images)
    archive.unlink()  # a second session needs no download
    assert find_test_data(url=archive.as_uri(), md5=md5) == path
    assert load_cifar(path, progress=False).cache_hit


def test_without_a_network_the_tests_that_need_data_skip_saying_why(fresh_clone, tmp_path):
    unreachable = (tmp_path / "no-such-archive.tar.gz").as_uri()
    with pytest.raises(pytest.skip.Exception, match="no CIFAR-10 beside the checkout"):
        data_or_skip(url=unreachable, md5=OFFICIAL_MD5)


def test_a_test_without_the_data_fixture_finds_no_data(tmp_path):
    """The rule that keeps a data-less clone green (tests/conftest.py): only a test that
    requests `real_data_path`, the fixture that skips without data, finds any. Here, on every
    machine, a job fails at once, naming the fixture, and writes nothing."""
    assert find_or_fetch_data(None) == NO_DATA_REQUESTED
    with pytest.raises(LabError, match="request the real_data_path fixture"):
        detect_format(find_or_fetch_data(None))
    out = tmp_path / "out"
    result = call_cli("--preset", "smoke", "--rounds", "1", "--out", str(out))
    assert_one_line_error(result, "request the real_data_path fixture")
    assert not out.exists()


def test_a_test_with_the_data_fixture_finds_it(real_data_path):
    assert find_or_fetch_data(None) == real_data_path != NO_DATA_REQUESTED


DATA_OWNERS = {"conftest.py", "test_data.py"}  # the fixture, and the tests of the data finders
AROUND_THE_FIXTURE = {
    "find_or_fetch_data",
    "resolve_data_path",
    "default_data_candidates",
    "download_cifar",
    "find_test_data",
    "data_or_skip",
}
DATA_PLACES = ("cifar10-jpeg", "shared/data", "cifar-10-batches-py")


def _names_and_strings(tree: ast.AST):
    """(line, text) of every name, attribute, imported name and string of a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, ast.ImportFrom):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_test_reaches_data_around_the_fixture():
    """Outside `DATA_OWNERS` no test calls the lab's data finders or names a data location:
    real data come only from `real_data_path` (or `real_cifar`, `all_out`, `loo_out` built on
    it), which skips saying why where there are none; other data are trees a test builds."""
    found = [
        f"{path.name}:{line}: {text}"
        for path in sorted((REPO / "tests").glob("*.py"))
        if path.name not in DATA_OWNERS
        for line, text in _names_and_strings(ast.parse(path.read_text()))
        if text in AROUND_THE_FIXTURE or any(place in text for place in DATA_PLACES)
    ]
    assert not found, found


# ----------------------------------------------------------------------------- bad input


def _no_image_tree(tmp: Path) -> Path:
    for split in ("train", "test"):
        for name in CLASSES[:2]:
            (tmp / split / name).mkdir(parents=True)
    return tmp


def _bad_tree(kind: str, real: Path, tmp: Path) -> tuple[Path, str]:
    """(the --data path, a fragment the error must contain) for each bad-input case."""
    if kind == "missing":
        return tmp / "nowhere", "no such file or directory"
    if kind == "no_images":
        return _no_image_tree(tmp / "t"), "class folder has no images"
    if kind == "no_classes":
        (tmp / "t" / "train").mkdir(parents=True)
        (tmp / "t" / "test").mkdir()
        return tmp / "t", "no class folders"
    tree = _copy_small_tree(real, tmp / "t")
    if kind == "empty_class":
        for path in (tree / "train" / "dog").iterdir():
            path.unlink()
        return tree, "train/dog: class folder has no images"
    if kind == "class_mismatch":
        shutil.rmtree(tree / "test" / "frog")
        return tree, "different classes"
    victim = sorted((tree / "train" / "cat").iterdir())[0]
    if kind == "corrupt":
        victim.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
        return tree, f"{victim}: cannot decode image"
    if kind == "wrong_size":
        Image.new("RGB", (64, 64)).save(victim, format="JPEG")
        return tree, "64x64 RGB; the network is built for 32x32 RGB"
    if kind == "grayscale":
        Image.new("L", (32, 32)).save(victim, format="JPEG")
        return tree, "32x32 L; the network is built for 32x32 RGB"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "no_images",
        "no_classes",
        "empty_class",
        "class_mismatch",
        "corrupt",
        "wrong_size",
        "grayscale",
    ],
)
def test_bad_image_folders_fail_cleanly(kind, real_data_path, tmp_path, monkeypatch):
    data, fragment = _bad_tree(kind, real_data_path, tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setenv("LAB_CACHE", str(cache))
    result = call_cli("--preset", "smoke", "--data", str(data), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, fragment)
    assert not cache.exists() or not any(cache.rglob("*.npy"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["truncated", "not_a_dict", "code", "wrong_shape"])
def test_bad_pickles_fail_cleanly(damage, python_version, tmp_path, monkeypatch):
    folder, _, _ = python_version
    victim = folder / "data_batch_3"
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:500])
        fragment = "not a readable CIFAR-10 pickle"
    elif damage == "not_a_dict":
        victim.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
        fragment = "expected a dict"
    elif damage == "code":
        victim.write_bytes(pickle.dumps({"data": print}, protocol=2))
        fragment = "refusing to load __builtin__.print"  # protocol 2 names it the Python 2 way
    else:
        victim.write_bytes(
            pickle.dumps(
                {b"data": np.zeros((4, 1024), np.uint8), b"labels": [0, 1, 2, 3]}, protocol=2
            )
        )
        fragment = "expected N x 3072 uint8"
    cache = tmp_path / "cache"
    monkeypatch.setenv("LAB_CACHE", str(cache))
    result = call_cli("--preset", "smoke", "--data", str(folder), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, str(victim), fragment)
    assert not cache.exists() or not any(cache.rglob("*.npy"))


def test_download_with_wrong_checksum_fails_cleanly(tmp_path, monkeypatch):
    fake = tmp_path / "fake.tar.gz"
    fake.write_bytes(b"not the CIFAR-10 archive")
    cache = tmp_path / "cache"
    monkeypatch.setenv("LAB_CACHE", str(cache))
    args = ["--preset", "smoke", "--download", "--download-url", fake.as_uri()]
    result = call_cli(*args, "--out", str(tmp_path / "out"))
    assert_one_line_error(result, f"does not match the published {OFFICIAL_MD5}")
    assert not any(cache.rglob("*")) or not (cache / "cifar-10-batches-py").exists()
    assert not any(cache.rglob("*.npy"))
