"""Sources and validation: image folders in every format, CIFAR-10's python format, keras
CIFAR-10, the bundled digits, and the clear errors a bad dataset gets."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from ingot.data import sources
from ingot.data.cifar10 import load_cifar10, load_keras_cifar10
from ingot.data.sources import (
    ensure_digits_folder,
    load_dataset,
    load_image_folder,
)
from ingot.errors import DataError


def test_mixed_folder_decodes_every_format_and_skips_the_corrupt_file(mixed_folder):
    data, report = load_image_folder(mixed_folder, min_images_per_class=2)
    assert data.class_names == ["cat", "dog", "fox"]
    assert report.class_counts == {"cat": 4, "dog": 4, "fox": 4}
    assert len(data) == 12 and data.paths is not None and len(data.sha256) == 12
    assert all(not p.endswith(("broken.jpg", ".txt", ".DS_Store")) for p in data.paths)
    assert [s.path.rsplit("/", 2)[-2:] for s in report.skipped] == [["dog", "broken.jpg"]]
    assert "not decodable" in report.skipped[0].reason
    assert report.formats == {"BMP": 2, "GIF": 2, "JPEG": 3, "PNG": 5}
    # dog: grayscale PNG + JPEG, RGBA PNG; fox: grayscale GIF (palette); cat's GIF is palette too.
    assert report.converted_modes == {"grayscale": 2, "palette": 2, "rgba": 1}
    assert report.ignored_files == 2  # cat/notes.txt, LICENSE.txt; hidden entries not counted
    assert (report.height.min, report.height.max) == (6, 16)
    assert (report.width.min, report.width.max) == (6, 12)
    assert report.height.mean == pytest.approx(np.mean([8, 10, 8, 8, 8, 12, 8, 8, 6, 8, 16, 8]))
    assert report.imbalance_ratio == 1.0


def test_labels_follow_the_class_folders(mixed_folder):
    data, _ = load_image_folder(mixed_folder, min_images_per_class=2)
    for path, label in zip(data.paths, data.labels):
        assert path.split("/")[-2] == data.class_names[label]


def test_file_the_training_decoder_rejects_is_skipped_with_its_reason(write_folder, random_pixels):
    """A 1-bit BMP opens in Pillow but not in TensorFlow: the scan must catch it."""
    from io import BytesIO

    from PIL import Image

    root = write_folder({"a": 3, "b": 3})
    buffer = BytesIO()
    Image.fromarray(random_pixels(1, (8, 8))).convert("1").save(buffer, format="BMP")
    (root / "a" / "onebit.bmp").write_bytes(buffer.getvalue())
    (root / "b" / "empty.png").write_bytes(b"")
    data, report = load_image_folder(root, min_images_per_class=3)
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in report.skipped}
    assert set(reasons) == {"onebit.bmp", "empty.png"}
    assert "channels" in reasons["onebit.bmp"] and "{{" not in reasons["onebit.bmp"]
    assert "empty" in reasons["empty.png"]
    assert len(data) == 6


def test_missing_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=r"dataset path .*nowhere does not exist; expected a folder "
                                        r"with one subfolder per class"):
        load_dataset(str(missing))


def test_one_class_folder_is_refused_naming_what_was_found(write_folder):
    root = write_folder({"only_cats": 6})
    with pytest.raises(DataError, match=r"1 class folder\(s\) \['only_cats'\].*at least two classes"):
        load_image_folder(root)


def test_flat_folder_of_images_says_to_use_subfolders(tmp_path, encode_image, random_pixels):
    (tmp_path / "flat").mkdir()
    for i in range(3):
        (tmp_path / "flat" / f"{i}.png").write_bytes(encode_image(random_pixels(i, (4, 4, 3)), "PNG"))
    with pytest.raises(DataError, match=r"no class folders and 3 image file\(s\) directly inside"):
        load_image_folder(tmp_path / "flat")


def test_class_emptied_by_corrupt_files_counts_as_missing(write_folder):
    root = write_folder({"a": 3})
    (root / "b").mkdir()
    (root / "b" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"1 class\(es\) with decodable images \['a'\]") as info:
        load_image_folder(root, min_images_per_class=1)
    assert info.value.report.skipped[0].path.endswith("bad.png")


def test_class_under_minimum_is_refused_naming_class_and_count(write_folder):
    root = write_folder({"big": 6, "small": 2, "fine": 5})
    with pytest.raises(DataError, match=r"class 'small' has 2 image\(s\), under min_images_per_class=5") as info:
        load_image_folder(root, min_images_per_class=5)
    assert info.value.report.class_counts == {"big": 6, "fine": 5, "small": 2}
    data, report = load_image_folder(root, min_images_per_class=2)
    assert report.imbalance_ratio == 3.0 and len(data) == 13


def test_report_is_json_serializable_and_renders_markdown(mixed_folder):
    _, report = load_image_folder(mixed_folder, min_images_per_class=2)
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["total"] == 12 and as_dict["skipped_count"] == 1
    assert as_dict["class_counts"] == {"cat": 4, "dog": 4, "fox": 4}
    assert as_dict["image_size"]["height"] == {"min": 6, "max": 16, "mean": report.height.mean}
    assert as_dict["converted_to_rgb"]["rgba"] == 1
    markdown = report.to_markdown()
    assert "| dog | 4 | 33.3% |" in markdown
    assert "broken.jpg" in markdown and "| height | 6 | 16 |" in markdown


# ---- CIFAR-10 python format ---------------------------------------------------------------


def _expected_cifar(batches: dict, include_test: bool = True) -> tuple[np.ndarray, np.ndarray]:
    names = ["data_batch_1", "data_batch_2"] + (["test_batch"] if include_test else [])
    rows = np.concatenate([batches[n][b"data"] for n in names])
    labels = np.concatenate([batches[n][b"labels"] for n in names])
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


@pytest.mark.parametrize("which", ["cifar_dir", "cifar_archive"])
def test_cifar_python_format_reads_nhwc_uint8_with_meta_names(which, request):
    location, batches = request.getfixturevalue(which)
    data, report = load_dataset(str(location), min_images_per_class=3)
    images, labels = _expected_cifar(batches)
    assert data.class_names == ["airplane", "automobile", "bird"]
    assert data.images.dtype == np.uint8 and data.images.shape == (15, 32, 32, 3)
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, labels)
    # Pixel (0, 0) of image 0 is the first red, green and blue values of its row.
    row = batches["data_batch_1"][b"data"][0]
    assert tuple(data.images[0, 0, 0]) == (row[0], row[1024], row[2048])
    assert report.kind == "cifar10" and report.total == 15
    assert report.class_counts == {"airplane": 5, "automobile": 5, "bird": 5}
    assert (report.height.min, report.width.max) == (32, 32)


def test_cifar_can_leave_out_the_test_batch(cifar_dir):
    location, batches = cifar_dir
    data, _ = load_cifar10(location, include_test_batch=False, min_images_per_class=3)
    np.testing.assert_array_equal(data.images, _expected_cifar(batches, include_test=False)[0])


def test_cifar_directory_without_batches_is_a_clear_error(cifar_dir):
    location, _ = cifar_dir
    for name in ("data_batch_1", "data_batch_2"):
        (location / name).unlink()
    with pytest.raises(DataError, match="no data_batch_"):
        load_cifar10(location)


def test_cifar_pickle_cannot_run_code(cifar_dir):
    location, _ = cifar_dir

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(location / "data_batch_1", "wb") as handle:
        pickle.dump({b"data": Exploit(), b"labels": []}, handle)
    with pytest.raises(DataError, match=r"builtins\.print is not allowed"):
        load_cifar10(location)


def test_keras_cifar10_failure_is_a_clear_data_error(monkeypatch):
    import keras

    def offline():
        raise OSError("URL fetch failure: name resolution failed")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(DataError, match=r"keras\.datasets\.cifar10\.load_data\(\).*network access"):
        load_dataset("keras:cifar10")


def test_keras_cifar10_merges_train_and_test(monkeypatch):
    import keras

    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    y_train, y_test = (np.arange(20) % 10).reshape(-1, 1), (np.arange(10) % 10).reshape(-1, 1)
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: ((x_train, y_train), (x_test, y_test)))
    data, report = load_keras_cifar10(min_images_per_class=3)
    assert data.class_names[0] == "airplane" and len(data.class_names) == 10
    np.testing.assert_array_equal(data.images, np.concatenate([x_train, x_test]))
    assert data.labels.dtype == np.int64 and report.total == 30


# ---- bundled digits ---------------------------------------------------------------------


def test_digits_folder_is_written_once_and_loads_1797_images(dataset_root, monkeypatch):
    folder = ensure_digits_folder()
    assert folder == dataset_root / "digits"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [str(d) for d in range(10)]
    assert not list(dataset_root.glob(".digits-tmp-*"))

    def must_not_write(_):
        raise AssertionError("the digits folder was written a second time")

    monkeypatch.setattr(sources, "_write_digits", must_not_write)
    assert ensure_digits_folder() == folder

    data, report = load_dataset("bundled:digits")
    assert len(data) == 1797 and len(data.class_names) == 10
    assert data.class_names == [str(d) for d in range(10)]
    assert report.class_counts["0"] == 178 and report.skipped == []
    assert (report.height.max, report.width.max) == (8, 8)

    # Pixels are sklearn's 0..16 values scaled to 0..255.
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index in (0, 5, 1796):
        stored = np.asarray(Image.open(folder / str(digits.target[index]) / f"{index:04d}.png"))
        np.testing.assert_array_equal(stored, np.round(digits.images[index] * 255 / 16).astype(np.uint8))


def test_crash_while_writing_digits_leaves_no_dataset(tmp_path, monkeypatch):
    def crash(folder):
        (folder / "0").mkdir()
        raise RuntimeError("disk full")

    monkeypatch.setattr(sources, "_write_digits", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_digits_folder(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_bundled_name_is_refused():
    with pytest.raises(DataError, match="bundled:digits"):
        load_dataset("bundled:mnist")
