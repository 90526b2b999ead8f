"""ingest: the split artifact, the HTML data report with its sample grid, config resolution, and
the component body's wiring (kfp artifacts in, resolved config out)."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import pytest
from PIL import Image

from ingot.errors import ConfigError, DataError
from tests.components.tiny import CLASSES, PER_CLASS, RECIPE

# One worker runs every step test, so the session's ingest and training happen once.
pytestmark = pytest.mark.xdist_group("tiny-steps")


class _Report(HTMLParser):
    """Collects the images, captions and table rows of the data report."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.captions: list[str] = []
        self.rows: list[list[str]] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "figcaption":
            self._in = "caption"
        elif tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._in = "cell"

    def handle_endtag(self, tag):
        if tag in ("figcaption", "td"):
            self._in = None

    def handle_data(self, data):
        if self._in == "caption":
            self.captions.append(data)
        elif self._in == "cell":
            self.rows[-1].append(data)


def _png(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    return base64.b64decode(src[len(prefix):])


def test_data_report_plots_draw_every_class():
    import numpy as np

    from ingot.reports import class_counts_figure, intensity_histograms_figure

    dark, bright = np.zeros(256, np.int64), np.zeros(256, np.int64)
    dark[10], bright[240] = 50, 50
    figure = intensity_histograms_figure({"dark": dark, "bright": bright, "mid": dark + bright})
    panels = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["dark", "bright", "mid"]
    assert panels[0].get_xlim() == (0, 255)
    counts = class_counts_figure({"train": {"a": 3, "b": 5}, "test": {"a": 1, "b": 1}}, ["a", "b"])
    (ax,) = counts.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert [p.get_height() for p in ax.patches] == [3, 5, 1, 1]  # stacked by split
    assert ax.get_ylabel() == "images"


def test_ingest_writes_a_verified_split_and_returns_its_lineage(ingested, tiny_folder):
    from ingot.data.records import open_dataset_artifact

    dataset_dir, _, metadata = ingested
    splits = open_dataset_artifact(str(dataset_dir))
    assert splits.class_names == CLASSES
    assert metadata["data_hash"] == splits.content_hash
    assert metadata["source"] == str(tiny_folder)
    assert metadata["class_names"] == CLASSES and metadata["num_classes"] == len(CLASSES)
    assert metadata["split_sizes"] == {name: len(part) for name, part in splits.items()}
    assert sum(metadata["split_sizes"].values()) == PER_CLASS * len(CLASSES)
    assert metadata["skipped_files"] == 0
    assert metadata["format"] == "ingot.dataset/v2" and metadata["shards"] == {"train": 1, "validation": 1, "test": 1}
    assert splits.report["total"] == PER_CLASS * len(CLASSES)  # the data report's figures travel along


def test_data_report_has_class_counts_and_a_3x3_grid_of_training_samples(ingested):
    from ingot.data.records import open_dataset_artifact

    dataset_dir, report_path, _ = ingested
    page = _Report()
    page.feed(report_path.read_text())
    splits = open_dataset_artifact(str(dataset_dir))

    samples = [image for image in page.images if image.get("class") == "sample"]
    assert len(samples) == 9
    for image in samples:
        with Image.open(io.BytesIO(_png(image["src"]))) as png:
            assert png.format == "PNG" and png.size == (20, 20)  # as the model sees them (image_size)
    # Round-robin over classes: every class appears before any repeats.
    assert page.captions[: len(CLASSES)] == CLASSES
    assert [image["alt"] for image in samples] == page.captions[:9]
    # Beside the grid, one image per plot: class counts and the per-class intensity histograms.
    plots = [image for image in page.images if image.get("class") != "sample"]
    assert [image["alt"] for image in plots] == [
        "images per class and split", "pixel-intensity histogram per class (training split, as the model sees it)"]
    for image in plots:
        with Image.open(io.BytesIO(_png(image["src"]))) as png:
            assert png.format == "PNG" and png.size[0] > 300

    counts = {row[0]: [int(cell) for cell in row[1:]] for row in page.rows if row}
    for name in CLASSES:
        total, train, validation, test = counts[name]
        assert total == PER_CLASS
        assert [train, validation, test] == [part.class_counts()[name] for _, part in splits.items()]


def test_resolve_config_applies_recipe_overrides_then_pipeline_parameters():
    from ingot.retrain.config import resolve_config

    config = resolve_config(RECIPE, ["batch_size=4", "augmentation.zoom=0.2"], architecture="cnn", epochs=9)
    assert (config.epochs, config.batch_size, config.augmentation.zoom) == (9, 4, 0.2)
    assert resolve_config(RECIPE, [], architecture="", epochs=0).epochs == RECIPE["epochs"]
    assert resolve_config(None).epochs == resolve_config({}).epochs  # TrainConfig defaults

    with pytest.raises(ConfigError, match="epochz"):
        resolve_config({"epochz": 3})
    with pytest.raises(ConfigError, match="epochs=-1"):
        resolve_config(RECIPE, epochs=-1)
    with pytest.raises(ConfigError, match="key=value"):
        resolve_config(RECIPE, "epochs=3")  # a string, not a list of strings
    with pytest.raises(ConfigError, match="mapping"):
        resolve_config(["epochs", 3])


def test_dataset_resolution_and_config_parameter_round_trip():
    from ingot.retrain.config import config_parameter, resolve_config, resolve_dataset
    from ingot.settings import DEFAULT_DATASET
    from ingot.train.config import TrainConfig

    config = resolve_config(RECIPE)
    assert resolve_dataset("  /data/flowers ", config) == "/data/flowers"
    assert resolve_dataset("", config) == DEFAULT_DATASET
    assert resolve_dataset("", resolve_config({**RECIPE, "dataset": "gs://b/cats"})) == "gs://b/cats"

    parameter = config_parameter(config)
    assert None not in parameter.values()  # kfp parameters cannot carry null
    assert "checkpoint_dir" not in parameter
    assert TrainConfig.from_dict(parameter) == config


def test_ingest_refuses_a_missing_dataset_naming_it(tmp_path, tiny_config):
    from components.steps import ingest_step

    missing = tmp_path / "no-such-folder"
    with pytest.raises(DataError, match="no-such-folder.*does not exist"):
        ingest_step(str(missing), tiny_config, tmp_path / "dataset", tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_component_body_resolves_the_config_and_fills_artifact_metadata(tiny_folder, tmp_path):
    from kfp import dsl

    from components.ingest.component import ingest
    from ingot.retrain.config import resolve_config
    from ingot.train.config import TrainConfig

    dataset = dsl.Dataset(name="dataset", uri=str(tmp_path / "dataset"))
    report = dsl.HTML(name="data_report", uri=str(tmp_path / "data_report"))
    config = ingest(dataset_uri=str(tiny_folder), recipe=RECIPE, overrides=["batch_size=4"], architecture="",
                    epochs=2, model_repository=str(tmp_path / "repo"),
                    registry_url=f"sqlite:///{tmp_path / 'registry.db'}", dataset=dataset, data_report=report)

    assert TrainConfig.from_dict(config) == resolve_config(RECIPE, ["batch_size=4"], epochs=2)
    assert None not in config.values()
    assert dataset.metadata["num_classes"] == len(CLASSES) and len(dataset.metadata["data_hash"]) == 64
    assert (tmp_path / "dataset" / "dataset.json").is_file()
    assert (tmp_path / "data_report").read_text().count('<img class="sample"') == 9
    assert (tmp_path / "repo").is_dir() and (tmp_path / "registry.db").is_file()  # both reached up front


def test_destinations_are_resolved_and_reached_before_training(tmp_path, monkeypatch):
    from ingot.retrain.registry import check_destinations

    monkeypatch.delenv("INGOT_MODEL_REPOSITORY", raising=False)
    monkeypatch.delenv("INGOT_REGISTRY_URL", raising=False)
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    assert check_destinations(str(tmp_path / "models"), url) == {"model_repository": str(tmp_path / "models"),
                                                                 "registry": url}
    with pytest.raises(ConfigError, match="no model repository given.*INGOT_MODEL_REPOSITORY"):
        check_destinations("", url)
    with pytest.raises(ConfigError, match="no registry given.*INGOT_REGISTRY_URL"):
        check_destinations(str(tmp_path / "models"), "  ")
    with pytest.raises(ConfigError, match="cannot open the registry"):
        check_destinations(str(tmp_path / "models"), "postgresql://ingot@127.0.0.1:1/registry")

    # Empty parameters fall back to the steps' environment (e.g. a Kubeflow PodDefault).
    monkeypatch.setenv("INGOT_MODEL_REPOSITORY", str(tmp_path / "env-models"))
    monkeypatch.setenv("INGOT_REGISTRY_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert check_destinations("", "")["model_repository"] == str(tmp_path / "env-models")
    assert (tmp_path / "env-models").is_dir() and (tmp_path / "env.db").is_file()
