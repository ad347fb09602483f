"""Reading real CIFAR-10, decoding it once, and caching the decoded arrays.

Two source formats are read:
- an image-folder tree `{train,test}/<class>/*.{jpg,jpeg,png}` (such as `shared/data/cifar10-jpeg`);
- the original "python version", `cifar-10-batches-py` (`data_batch_1..5`, `test_batch`,
  `batches.meta`), which `--download` fetches.

Decoding happens once: the uint8 arrays are cached in `<cache>/decoded/` under a key made of the
source's resolved path and every file's size and modification time, so editing, adding or
removing a file invalidates the cache. Nothing is written to the cache unless the whole source
decoded cleanly.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from lab import REPO_ROOT
from lab.errors import LabError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_SHAPE = (32, 32, 3)
PYTHON_VERSION_DIR = "cifar-10-batches-py"
PYTHON_TRAIN_FILES = tuple(f"data_batch_{index}" for index in range(1, 6))
PYTHON_FILES = (*PYTHON_TRAIN_FILES, "test_batch", "batches.meta")
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
CACHE_FORMAT = 1  # bump when the cached arrays' layout changes


class DownloadFailed(LabError):
    """The archive could not be fetched (no network, a bad URL); a wrong MD5 or a damaged
    archive is a plain LabError. A test run without data skips on this one only."""


@dataclass(frozen=True)
class Cifar:
    """Decoded CIFAR-10: uint8 images in HWC layout and int64 labels."""

    train_images: np.ndarray  # (N, 32, 32, 3) uint8
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray  # (M, 32, 32, 3) uint8
    test_labels: np.ndarray  # (M,) int64
    classes: tuple[str, ...]
    source: str  # resolved path the data came from
    decode_s: float  # seconds spent decoding in this process (0.0 on a cache hit)
    load_s: float  # seconds to obtain the arrays (decode or cache load)
    cache_hit: bool
    fingerprint: str = ""  # the decoded cache's key of the source (path, sizes, mtimes)


def default_cache_dir() -> Path:
    """`$LAB_CACHE`, else `~/.cache/lab`."""
    return Path(os.environ.get("LAB_CACHE") or Path.home() / ".cache" / "lab")


def default_data_candidates() -> list[Path]:
    """Where `--data` is looked for when not given, in order (documented in docs/data.md)."""
    candidates = []
    if os.environ.get("LAB_DATA"):
        candidates.append(Path(os.environ["LAB_DATA"]))
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg")
    candidates.append(default_cache_dir() / PYTHON_VERSION_DIR)
    return candidates


def resolve_data_path(data: str | None) -> Path | None:
    """The explicit `--data`, else `$LAB_DATA`, else the first default that exists; None when
    nothing was named and no default exists (the caller then downloads)."""
    if data is not None:
        return Path(data)
    candidates = default_data_candidates()
    if os.environ.get("LAB_DATA"):
        return candidates[0]  # an explicit environment variable is never second-guessed
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return None


def find_or_fetch_data(
    data: str | None,
    download: bool = False,
    url: str = OFFICIAL_URL,
    md5: str = OFFICIAL_MD5,
    say: Callable[[str], None] = lambda line: None,
) -> Path:
    """The data source a job uses: `--download` fetches the official archive; otherwise
    `resolve_data_path`, and when nothing was named and nothing is found, the official archive
    is fetched into the cache (MD5-checked) as a newcomer would expect, saying so via `say`."""
    if download:
        return download_cifar(url=url, md5=md5)
    path = resolve_data_path(data)
    if path is not None:
        return path
    tried = ", ".join(str(candidate) for candidate in default_data_candidates())
    say(f"data: no CIFAR-10 found (tried {tried}); downloading {url} into {default_cache_dir()}")
    try:
        return download_cifar(url=url, md5=md5)
    except LabError as error:
        raise type(error)(f"no CIFAR-10 found (tried {tried}) and {error}") from None


def source_key(path: Path) -> tuple[str, str]:
    """(resolved root, fingerprint) of a data source: what a job stores to refuse other data."""
    kind, root = detect_format(path)
    return str(root.resolve()), source_fingerprint(kind, root)


# ----------------------------------------------------------------------------- formats


def detect_format(path: Path) -> tuple[str, Path]:
    """('folder' | 'python', root) for a source path; LabError if it is neither."""
    if not path.exists():
        raise LabError(f"{path}: no such file or directory")
    if not path.is_dir():
        raise LabError(f"{path}: not a directory (expected a CIFAR-10 folder)")
    if (path / PYTHON_VERSION_DIR).is_dir():
        path = path / PYTHON_VERSION_DIR
    if (path / "data_batch_1").exists() or (path / "test_batch").exists():
        return "python", path
    if (path / "train").is_dir() and (path / "test").is_dir():
        return "folder", path
    raise LabError(
        f"{path}: not a CIFAR-10 folder (expected train/ and test/ class folders, "
        f"or {PYTHON_VERSION_DIR} with data_batch_1..5 and test_batch)"
    )


def _folder_listing(root: Path) -> dict[str, dict[str, list[Path]]]:
    """{split: {class: sorted image paths}}, validated; LabError on a malformed tree."""
    listing: dict[str, dict[str, list[Path]]] = {}
    for split in ("train", "test"):
        classes = sorted(entry.name for entry in os.scandir(root / split) if entry.is_dir())
        if not classes:
            raise LabError(f"{root / split}: no class folders (expected {split}/<class>/*.jpg)")
        listing[split] = {}
        for name in classes:
            folder = root / split / name
            images = sorted(
                Path(entry.path)
                for entry in os.scandir(folder)
                if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)
            )
            if not images:
                raise LabError(f"{folder}: class folder has no images (.jpg, .jpeg or .png)")
            listing[split][name] = images
    train_classes, test_classes = set(listing["train"]), set(listing["test"])
    if train_classes != test_classes:
        only_train = sorted(train_classes - test_classes)
        only_test = sorted(test_classes - train_classes)
        raise LabError(
            f"{root}: train and test have different classes "
            f"(only in train: {only_train or 'none'}; only in test: {only_test or 'none'})"
        )
    return listing


def decode_image(path: Path) -> np.ndarray:
    """One image as a (32, 32, 3) uint8 array; LabError if unreadable or not 32x32 RGB."""
    try:
        with Image.open(path) as image:
            image.load()
            mode, size = image.mode, image.size
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise LabError(f"{path}: cannot decode image ({error})") from None
    if mode != "RGB" or size != (32, 32):
        raise LabError(
            f"{path}: image is {size[0]}x{size[1]} {mode}; the network is built for 32x32 RGB"
        )
    return array


def _decode_chunk(paths: list[Path]) -> np.ndarray:
    return np.stack([decode_image(path) for path in paths])


def _decode_all(paths: list[Path], progress: bool) -> np.ndarray:
    """Decode in parallel over the machine's cores, in order."""
    from tqdm import tqdm

    chunk = 1000
    chunks = [paths[start : start + chunk] for start in range(0, len(paths), chunk)]
    workers = max(1, min(len(chunks), os.cpu_count() or 1))
    if workers == 1:
        results = [_decode_chunk(part) for part in chunks]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(
                tqdm(
                    pool.map(_decode_chunk, chunks),
                    total=len(chunks),
                    desc="decoding CIFAR-10 (once)",
                    unit="k images",
                    disable=not progress,
                )
            )
    return np.concatenate(results) if results else np.zeros((0, *IMAGE_SHAPE), np.uint8)


def _read_folder(root: Path, progress: bool) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    listing = _folder_listing(root)
    classes = tuple(sorted(listing["train"]))
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        paths = [path for name in classes for path in listing[split][name]]
        labels = [index for index, name in enumerate(classes) for _ in listing[split][name]]
        arrays[f"{split}_images"] = _decode_all(paths, progress)
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
    return arrays, classes


def _numpy_core(module: str) -> object:
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core to numpy._core
    return getattr(core, module)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's dicts of numpy arrays and refuses anything else (no code execution)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol-2 pickles from Python 3
            return codecs.encode
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        core_module, attribute = self.ALLOWED[(module, name)]
        return getattr(_numpy_core(core_module), attribute)


def _load_pickle(path: Path) -> dict:
    if not path.is_file():
        raise LabError(f"{path}: missing (a {PYTHON_VERSION_DIR} folder needs {PYTHON_FILES})")
    try:
        with open(path, "rb") as handle:
            content = _NumpyOnlyUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise LabError(f"{path}: not a readable CIFAR-10 pickle ({error or 'truncated'})") from None
    if not isinstance(content, dict):
        raise LabError(f"{path}: not a CIFAR-10 pickle (expected a dict)")
    return {
        key.decode() if isinstance(key, bytes) else key: value for key, value in content.items()
    }


def _read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    content = _load_pickle(path)
    data, labels = content.get("data"), content.get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise LabError(f"{path}: not a CIFAR-10 batch (needs 'data' and 'labels')")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise LabError(
            f"{path}: 'data' is {data.dtype} {data.shape}; expected N x 3072 uint8 "
            "(32x32 RGB, channel-major; the network is built for 32x32 RGB)"
        )
    if len(labels) != len(data):
        raise LabError(f"{path}: {len(labels)} labels for {len(data)} images")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # channel-major rows -> HWC
    return np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64)


def _read_python(root: Path) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    meta = _load_pickle(root / "batches.meta")
    names = meta.get("label_names")
    if not names:
        raise LabError(f"{root / 'batches.meta'}: no 'label_names'")
    classes = tuple(name.decode() if isinstance(name, bytes) else str(name) for name in names)
    train = [_read_python_batch(root / name) for name in PYTHON_TRAIN_FILES]
    test_images, test_labels = _read_python_batch(root / "test_batch")
    arrays = {
        "train_images": np.concatenate([images for images, _ in train]),
        "train_labels": np.concatenate([labels for _, labels in train]),
        "test_images": test_images,
        "test_labels": test_labels,
    }
    for split in ("train", "test"):
        labels = arrays[f"{split}_labels"]
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise LabError(f"{root}: {split} labels outside 0..{len(classes) - 1}")
    return arrays, classes


# ----------------------------------------------------------------------------- cache


def _stat_tree(directory: str, prefix: str, out: list[str]) -> None:
    """Append 'relative path|size|mtime_ns' for every file below `directory` (sorted)."""
    with os.scandir(directory) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            relative = f"{prefix}/{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                _stat_tree(entry.path, relative, out)
            else:
                stat = entry.stat()
                out.append(f"{relative}|{stat.st_size}|{stat.st_mtime_ns}")


def source_fingerprint(kind: str, root: Path) -> str:
    """Hash of the resolved path and every source file's relative path, size and mtime."""
    lines = [f"{CACHE_FORMAT}|{kind}|{root.resolve()}"]
    if kind == "python":
        for name in PYTHON_FILES:
            path = root / name
            stat = path.stat() if path.exists() else None
            lines.append(f"{name}|{stat.st_size}|{stat.st_mtime_ns}" if stat else f"{name}|missing")
    else:
        for split in ("train", "test"):
            _stat_tree(str(root / split), split, lines)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:24]


CACHED_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


def _cache_dir_for(cache_dir: Path, fingerprint: str) -> Path:
    return cache_dir / "decoded" / f"cifar10-{fingerprint}"


def _write_cache(folder: Path, arrays: dict[str, np.ndarray], classes: tuple[str, ...]) -> None:
    """Atomic: the folder appears only once every array is written, so a failed or interrupted
    write never becomes a cache entry."""
    staging = folder.with_name(f"{folder.name}.{os.getpid()}.partial")
    staging.mkdir(parents=True, exist_ok=True)
    for name in CACHED_ARRAYS:
        np.save(staging / f"{name}.npy", arrays[name])
    (staging / "classes.txt").write_text("\n".join(classes) + "\n")
    try:
        os.replace(staging, folder)
    except OSError:  # another process cached the same source first
        shutil.rmtree(staging, ignore_errors=True)


def _read_cache(folder: Path) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    arrays = {name: np.load(folder / f"{name}.npy") for name in CACHED_ARRAYS}
    classes = tuple((folder / "classes.txt").read_text().split())
    return arrays, classes


def load_cifar(path: Path, cache_dir: Path | None = None, progress: bool = True) -> Cifar:
    """Decoded CIFAR-10 from `path`, from the cache when the source is unchanged."""
    start = time.perf_counter()
    kind, root = detect_format(path)
    fingerprint = source_fingerprint(kind, root)
    cache = _cache_dir_for(cache_dir or default_cache_dir(), fingerprint)
    if cache.is_dir():
        arrays, classes = _read_cache(cache)
        return Cifar(
            **arrays,
            classes=classes,
            source=str(root.resolve()),
            decode_s=0.0,
            load_s=time.perf_counter() - start,
            cache_hit=True,
            fingerprint=fingerprint,
        )
    arrays, classes = _read_python(root) if kind == "python" else _read_folder(root, progress)
    decode_s = time.perf_counter() - start
    _write_cache(cache, arrays, classes)
    return Cifar(
        **arrays,
        classes=classes,
        source=str(root.resolve()),
        decode_s=decode_s,
        load_s=time.perf_counter() - start,
        cache_hit=False,
        fingerprint=fingerprint,
    )


# ----------------------------------------------------------------------------- subsets


def balanced_subset(labels: np.ndarray, count: int | None, seed: int) -> np.ndarray:
    """Indices of a deterministic class-balanced subset (sorted); all indices if `count` is None.

    Each class gets `count // classes` images (the first classes one more for the remainder),
    drawn by a seeded permutation, so the same seed always picks the same images.
    """
    if count is None or count >= len(labels):
        return np.arange(len(labels))
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    per_class, remainder = divmod(count, len(classes))
    chosen = []
    for rank, label in enumerate(classes):
        members = np.flatnonzero(labels == label)
        take = per_class + (1 if rank < remainder else 0)
        if take > len(members):
            raise LabError(
                f"subset of {count} needs {take} images of class {label}; "
                f"the source has {len(members)}"
            )
        chosen.append(rng.permutation(members)[:take])
    return np.sort(np.concatenate(chosen))


def subset(data: Cifar, train_images: int | None, test_images: int | None, seed: int) -> Cifar:
    train = balanced_subset(data.train_labels, train_images, seed)
    test = balanced_subset(data.test_labels, test_images, seed + 1)
    # The same source, timings and fingerprint: only the arrays are cut.
    return replace(
        data,
        train_images=data.train_images[train],
        train_labels=data.train_labels[train],
        test_images=data.test_images[test],
        test_labels=data.test_labels[test],
    )


# ----------------------------------------------------------------------------- download


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_cifar(
    cache_dir: Path | None = None, url: str = OFFICIAL_URL, md5: str = OFFICIAL_MD5
) -> Path:
    """Fetch the python-version archive into the cache, verify its MD5, extract; return the dir.

    An archive that fails the check is deleted and nothing is extracted.
    """
    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / PYTHON_VERSION_DIR
    if all((target / name).is_file() for name in PYTHON_FILES):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    archive = cache_dir / f"cifar-10-python.tar.gz.{os.getpid()}.partial"
    try:
        urllib.request.urlretrieve(url, archive)
    except (urllib.error.URLError, OSError, ValueError) as error:
        archive.unlink(missing_ok=True)
        raise DownloadFailed(f"--download {url}: {error}") from None
    actual = _md5(archive)
    if actual != md5:
        archive.unlink()
        raise LabError(f"--download {url}: MD5 {actual} does not match the published {md5}")
    staging = cache_dir / f"extract.{os.getpid()}.partial"
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise LabError(f"--download {url}: cannot extract the archive ({error})") from None
    finally:
        archive.unlink(missing_ok=True)
    extracted = staging / PYTHON_VERSION_DIR
    if not extracted.is_dir():
        raise LabError(f"--download {url}: the archive has no {PYTHON_VERSION_DIR}/ folder")
    os.replace(extracted, target)
    staging.rmdir()
    return target
