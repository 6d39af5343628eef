# SPDX-License-Identifier: GPL-2.0-or-later
"""A real accuracy check: the ukis-csmask cloud/shadow U-Net (PyPI ``ukis-csmask==1.0.0``, Apache-2.0) through
dltools:classifypixels on a real Sentinel-2 patch, scored against its hand-made reference mask.

The wheel ships four ONNX models (``model_{4b,6b}_{l1c,l2a}.onnx``) with a ``model_*.json`` beside each holding the
band mean/std. This test uses the 6-band L2A model (``model_6b_l2a.onnx``, bands blue, green, red, nir, swir16,
swir22, which is the band order of ``sentinel2_6band.tif``), described by an .emd written here: ExtractBands
0..5, ``NormalizationStats`` with band_min 0 / band_max 1 (the raster already holds reflectance) and
scaled_mean/scaled_std from the JSON, so the model sees ``(x - mean) / std`` exactly as ukis-csmask feeds it.
Measured on this patch: Cohen's kappa 0.758 with ``padding 64`` (0.756 with the default padding; the 6-band L1C
model gives 0.788), above the 0.75 this test asks (upstream accepts 0.60), so the L2A model is kept.

The wheel (145 MB) is downloaded once with pip into ``build/cache/wheels``; without network the test skips.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from builders import read_raster
from conftest import testdata_path as shared_testdata
from osgeo import gdal
from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ROOT / "build" / "cache" / "wheels"
MODEL = "model_6b_l2a"
KAPPA_MIN = 0.75


def ukis_wheel() -> Path:
    found = sorted(WHEELS.glob("ukis_csmask-1.0.0-*.whl"))
    if not found:
        WHEELS.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                                   "ukis-csmask==1.0.0", "-d", str(WHEELS)], capture_output=True, text=True,
                                  timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"could not download ukis-csmask==1.0.0 from PyPI: {exc}")
        found = sorted(WHEELS.glob("ukis_csmask-1.0.0-*.whl"))
        if proc.returncode != 0 or not found:
            pytest.skip(f"could not download ukis-csmask==1.0.0 from PyPI (no network?): {proc.stderr.strip()[-500:]}")
    return found[0]


def cohen_kappa(a: np.ndarray, b: np.ndarray, n: int) -> float:
    confusion = np.zeros((n, n))
    np.add.at(confusion, (a.ravel().astype(int), b.ravel().astype(int)), 1)
    total = confusion.sum()
    observed = np.trace(confusion) / total
    expected = (confusion.sum(axis=0) * confusion.sum(axis=1)).sum() / total ** 2
    return float((observed - expected) / (1 - expected))


def test_cohen_kappa():
    a = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    assert cohen_kappa(a, a, 3) == pytest.approx(1.0)
    b = np.array([0, 1, 1, 1, 2, 0, 0, 1])
    # 6 of 8 agree; chance agreement from the marginals (3,3,2) and (3,4,1): (9 + 12 + 2) / 64
    assert cohen_kappa(a, b, 3) == pytest.approx((6 / 8 - 23 / 64) / (1 - 23 / 64))


@pytest.fixture(scope="module")
def ukis_emd(tmp_path_factory) -> Path:
    wheel = ukis_wheel()
    folder = tmp_path_factory.mktemp("ukis")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert f"ukis_csmask/{MODEL}.onnx" in names and f"ukis_csmask/{MODEL}.json" in names
        (folder / f"{MODEL}.onnx").write_bytes(zf.read(f"ukis_csmask/{MODEL}.onnx"))
        meta = json.loads(zf.read(f"ukis_csmask/{MODEL}.json"))
    stats = meta["data"]["dataset_statistics"]
    assert stats["band_names"] == ["blue", "green", "red", "nir", "swir16", "swir22"]
    mean, std = stats["img"]
    assert meta["data"]["target_size"] == [256, 256] and meta["data"]["classes"] == 3
    emd = folder / f"{MODEL}.emd"
    emd.write_text(json.dumps({
        "Framework": "ONNX", "ModelType": "ImageClassification", "ModelFile": f"{MODEL}.onnx",
        "ImageHeight": 256, "ImageWidth": 256, "ExtractBands": [0, 1, 2, 3, 4, 5],
        "NormalizationStats": {"band_min_values": [0] * 6, "band_max_values": [1] * 6,
                               "scaled_mean_values": mean, "scaled_std_values": std},
        "Classes": [{"Value": 0, "Name": "clear", "Color": [60, 160, 60]},
                    {"Value": 1, "Name": "cloud", "Color": [255, 255, 255]},
                    {"Value": 2, "Name": "shadow", "Color": [40, 40, 40]}],
    }, indent=2), encoding="utf-8")
    return emd


def test_ukis_csmask_accuracy(qgis_app, tmp_path, ukis_emd):
    import processing

    image = shared_testdata("sentinel2", "sentinel2_6band.tif")
    reference = shared_testdata("sentinel2", "sentinel2_refmask.tif")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    out = tmp_path / "csmask.tif"
    processing.run("dltools:classifypixels", {"INPUT": str(image), "MODEL": str(ukis_emd),
                                              "ARGUMENTS": "padding 64;batch_size 4", "OUTPUT": str(out)},
                   context=context, feedback=QgsProcessingFeedback())
    predicted = read_raster(out)
    ref = read_raster(reference)
    assert predicted.shape == ref.shape == (512, 512)
    assert set(np.unique(ref)) <= {0, 1, 2, 3, 4}
    # reference: 0 = cloud shadow, 1/2/3 = clear, 4 = cloud  ->  model classes 0 clear, 1 cloud, 2 shadow
    ref_classes = np.select([ref == 0, ref == 4], [2, 1], 0)
    assert set(np.unique(predicted)) <= {0, 1, 2}
    kappa = cohen_kappa(predicted, ref_classes, 3)
    agreement = (predicted == ref_classes).mean()
    print(f"ukis-csmask {MODEL}: Cohen's kappa {kappa:.4f}, overall agreement {agreement:.4f}")
    assert kappa >= KAPPA_MIN
    # the same figure from Compute Accuracy For Pixel Classification, the reference mapped by CLASS_MAPPING
    accuracy = processing.run("dltools:computeaccuracypixelclassification", {
        "INPUT": str(out), "REFERENCE": str(reference), "CLASS_MAPPING": "0:2;1:0;2:0;3:0;4:1",
        "OUTPUT": str(tmp_path / "confusion.csv"), "OUTPUT_METRICS": str(tmp_path / "per_class.csv"),
        "OUTPUT_HTML": str(tmp_path / "accuracy.html")}, context=context, feedback=QgsProcessingFeedback())
    print(f"Compute Accuracy For Pixel Classification: kappa {accuracy['KAPPA']:.4f}, overall accuracy "
          f"{accuracy['OVERALL_ACCURACY']:.4f}, mean IoU {accuracy['MEAN_IOU']:.4f}")
    assert accuracy["KAPPA"] == pytest.approx(kappa, abs=1e-12)
    assert accuracy["OVERALL_ACCURACY"] == pytest.approx(agreement, abs=1e-12)
    ds = gdal.Open(str(out))
    assert ds.GetGeoTransform() == gdal.Open(str(image)).GetGeoTransform()
    assert out.with_suffix(".qml").read_text().count("<paletteEntry") == 3
