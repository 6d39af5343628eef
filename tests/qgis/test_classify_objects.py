# SPDX-License-Identifier: GPL-2.0-or-later
"""dltools:classifyobjects through processing.run, qgis_process and a Graphical Modeler .model3."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from builders import write_raster
from osgeo import gdal, ogr, osr
from qgis.core import (
    NULL,
    QgsGeometry,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant
from recording_feedback import RecordingFeedback

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "classify_objects"))
import qgis_process_util  # noqa: E402
from co_models import (  # noqa: E402
    EPSG,
    MEAN_CLASSES,
    ORIGIN,
    grid_raster,
    mean_class_name,
    mean_emd,
    mean_model_files,
    wkt_line,
    wkt_point,
    wkt_polygon,
    wkt_rect,
    write_object_emd,
)

ALG = "dltools:classifyobjects"
NEW_FIELDS = ["ClassLabel", "ClassValue", "Confidence"]




@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("co_models_qgis")
    for tile in (7, 15, 5):
        mean_model_files(folder, tile)
    return folder


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    return grid_raster(tmp_path_factory.mktemp("co_raster_qgis") / "grid.tif")


def write_layer(path: Path, geoms: list[str | None], epsg: int | None = EPSG, attrs: list[dict] | None = None,
                geom_type: int = ogr.wkbUnknown, extra_fields: tuple[tuple[str, int], ...] = ()) -> Path:
    """A GeoPackage layer with a text 'name' and an integer 'n' field (plus ``extra_fields``)."""
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = None
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    layer = ds.CreateLayer("features", srs, geom_type)
    layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    layer.CreateField(ogr.FieldDefn("n", ogr.OFTInteger))
    for name, kind in extra_fields:
        layer.CreateField(ogr.FieldDefn(name, kind))
    for i, wkt in enumerate(geoms):
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetField("name", f"f{i}")
        f.SetField("n", 100 + i)
        for k, v in (attrs[i] if attrs else {}).items():
            f.SetField(k, v)
        if wkt is not None:
            f.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(f)
    ds = None
    return path


def classify(context, params: dict, tmp_path: Path, name: str = "out.gpkg") -> tuple[QgsVectorLayer, RecordingFeedback]:
    import processing

    feedback = RecordingFeedback()
    out = tmp_path / name
    result = processing.run(ALG, {**params, "OUTPUT": str(out)}, context=context, feedback=feedback)
    assert result["OUTPUT"] == str(out)
    layer = QgsVectorLayer(str(out), "out", "ogr")
    assert layer.isValid()
    return layer, feedback


def rows(layer: QgsVectorLayer, *fields: str) -> list[tuple]:
    return [tuple(None if f[n] == NULL else f[n] for n in fields) for f in layer.getFeatures()]


def classify_error(context, params: dict, tmp_path: Path) -> str:
    import processing

    with pytest.raises(QgsProcessingException) as info:
        processing.run(ALG, {**params, "OUTPUT": str(tmp_path / "err.gpkg")}, context=context)
    return str(info.value)


# ------------------------------------------------------------------------------------------------ features
FEATURES = [wkt_point(20.3, 30.7), wkt_line((10.2, 5.2), (20.8, 9.6)), wkt_rect(10, 20, 20, 30),
            wkt_polygon((10, 10), (20, 10), (10, 20)), wkt_point(1.5, 62.5), wkt_point(70.0, 10.0)]
# doubled mean of column + 1 in each fixed 7 x 7 chip (valid pixels only); the last feature lies outside
EXPECTED_COLS = [42, 32, 32, 32, 6, None]


def test_algorithm_metadata(qgis_app):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    assert alg is not None and alg.displayName() == "Classify Objects Using Deep Learning"
    names = [p.name() for p in alg.parameterDefinitions()]
    # the imagery, its alternative right under it, then the features
    assert names == ["INPUT", "IMAGE_FOLDER", "FEATURES", "MODEL", "ARGUMENTS", "CLASS_LABEL_FIELD", "PROCESSING_MODE",
                     "CELL_SIZE", "DEVICE", "GPU_ID", "SCHEDULER", "RETRIES", "ALLOW_CUSTOM_CODE", "OUTPUT"]
    flags = {n: alg.parameterDefinition(n).flags() for n in ("INPUT", "IMAGE_FOLDER", "FEATURES")}
    optional, advanced = alg.parameterDefinition("INPUT").FlagOptional, alg.parameterDefinition("INPUT").FlagAdvanced
    assert not flags["INPUT"] & optional and flags["IMAGE_FOLDER"] & optional and flags["FEATURES"] & optional
    assert not any(f & advanced for f in flags.values())  # the alternative is in sight, not under Advanced
    assert alg.parameterDefinition("CLASS_LABEL_FIELD").defaultValue() == "ClassLabel"
    assert "CropSizeFixed 1" in alg.shortHelpString() and "suffix _1" in alg.shortHelpString()


def test_mixed_features_keep_attributes_and_geometry(context, models, grid, tmp_path):
    src = write_layer(tmp_path / "in.gpkg", FEATURES)
    layer, feedback = classify(context, {"INPUT": str(grid), "FEATURES": str(src),
                                         "MODEL": str(mean_emd(models, band=0, tile=7)), "ARGUMENTS": "batch_size 4"},
                               tmp_path)
    assert [f.name() for f in layer.fields()] == ["fid", "name", "n"] + NEW_FIELDS
    types = {f.name(): f.type() for f in layer.fields()}
    assert (types["ClassLabel"], types["ClassValue"], types["Confidence"]) == (QVariant.String, QVariant.Int,
                                                                                QVariant.Double)
    got = rows(layer, "name", "n", "ClassLabel", "ClassValue")
    assert got == [(f"f{i}", 100 + i, None if v is None else mean_class_name(v), v) for i, v in enumerate(EXPECTED_COLS)]
    for f, wkt in zip(layer.getFeatures(), FEATURES):
        assert f.geometry().equals(QgsGeometry.fromWkt(wkt))
    assert any(e == "Feature 6: no label, it lies entirely outside the raster" for e in feedback.errors)
    assert any(i.startswith("Classified 5 of 6 features in ") for i in feedback.infos)
    assert "Labels: m3 1, m16 3, m21 1" in feedback.infos


def test_features_in_another_crs(context, models, grid, tmp_path):
    src_srs, dst_srs = osr.SpatialReference(), osr.SpatialReference()
    src_srs.ImportFromEPSG(EPSG)
    dst_srs.ImportFromEPSG(4326)
    for s in (src_srs, dst_srs):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_wgs84 = osr.CoordinateTransformation(src_srs, dst_srs)
    wgs = []
    for wkt in FEATURES:
        g = ogr.CreateGeometryFromWkt(wkt)
        g.Transform(to_wgs84)
        wgs.append(g.ExportToWkt())
    src = write_layer(tmp_path / "wgs84.gpkg", wgs, epsg=4326)
    for emd in (mean_emd(models, band=0, tile=7), mean_emd(models, band=1, tile=15, blacken=1)):
        native, native_log = classify(context, {"INPUT": str(grid), "FEATURES": str(write_layer(tmp_path / "n.gpkg",
                                                                                               FEATURES)),
                                                "MODEL": str(emd)}, tmp_path, "native.gpkg")
        assert not [i for i in native_log.infos if i.startswith("Features are transformed")]  # same CRS: untouched
        other, feedback = classify(context, {"INPUT": str(grid), "FEATURES": str(src), "MODEL": str(emd)}, tmp_path,
                                   "wgs.gpkg")
        assert rows(other, "ClassLabel", "ClassValue") == rows(native, "ClassLabel", "ClassValue")
        assert other.crs().authid() == "EPSG:4326"  # the output keeps the features' own CRS and geometry
        assert "Features are transformed from EPSG:4326 to the raster's EPSG:32633" in feedback.infos
        (tmp_path / "n.gpkg").unlink()
    assert rows(native, "ClassLabel")[2:4] == [("m25.5",), ("m14",)]


def test_crop_to_feature(context, models, grid, tmp_path):
    src = write_layer(tmp_path / "in.gpkg", [wkt_rect(10, 20, 20, 25), wkt_rect(10, 20, 13, 30), wkt_point(30.5, 40.5)])
    layer, feedback = classify(context, {"INPUT": str(grid), "FEATURES": str(src),
                                         "MODEL": str(mean_emd(models, band=0, tile=5, crop_fixed=0))}, tmp_path)
    assert rows(layer, "ClassLabel") == [("m15.5",), ("m12.5",), ("m31",)]
    assert "Chips: each feature's bounding box (padding 0) resized to 5x5; BlackenAroundFeature 0" in feedback.infos


def test_null_invalid_and_empty_geometries(context, models, grid, tmp_path):
    bowtie = wkt_polygon((10, 20), (20, 30), (20, 20), (10, 30))  # self-intersecting: repaired into two triangles
    src = write_layer(tmp_path / "in.gpkg", [bowtie, None, wkt_rect(10, 20, 20, 30)])
    from qgis.core import QgsFeatureRequest

    context.setInvalidGeometryCheck(QgsFeatureRequest.GeometryAbortOnInvalid)  # the tool repairs, never aborts/skips
    layer, feedback = classify(context, {"INPUT": str(grid), "FEATURES": str(src),
                                         "MODEL": str(mean_emd(models, band=0, tile=7))}, tmp_path)
    assert rows(layer, "name", "ClassLabel") == [("f0", "m16"), ("f1", None), ("f2", "m16")]
    first = next(layer.getFeatures())
    assert first.geometry().equals(QgsGeometry.fromWkt(bowtie))  # the original geometry is written back
    assert "Feature 2: no label, it has no geometry" in feedback.errors
    assert any(i.startswith("1 invalid geometries were repaired (make valid)") for i in feedback.infos)
    empty = write_layer(tmp_path / "empty.gpkg", [])
    message = classify_error(context, {"INPUT": str(grid), "FEATURES": str(empty),
                                       "MODEL": str(mean_emd(models, band=0, tile=7))}, tmp_path)
    assert message.startswith("Layer '") and message.endswith("' has no features: there is nothing to classify")


def test_field_name_collisions_and_label_field(context, models, grid, tmp_path):
    src = write_layer(tmp_path / "in.gpkg", [wkt_point(20.3, 30.7)], attrs=[{"classlabel": "old", "Confidence": 1.5}],
                      extra_fields=(("classlabel", ogr.OFTString), ("Confidence", ogr.OFTReal)))
    emd = str(mean_emd(models, band=0, tile=7))
    layer, feedback = classify(context, {"INPUT": str(grid), "FEATURES": str(src), "MODEL": emd}, tmp_path)
    assert [f.name() for f in layer.fields()] == ["fid", "name", "n", "classlabel", "Confidence", "ClassLabel_1",
                                                  "ClassValue", "Confidence_1"]
    assert rows(layer, "classlabel", "Confidence", "ClassLabel_1", "ClassValue") == [("old", 1.5, "m21", 42)]
    assert "The input already has a field 'ClassLabel': the new field is called 'ClassLabel_1'" in feedback.errors
    assert "The input already has a field 'Confidence': the new field is called 'Confidence_1'" in feedback.errors
    named, _ = classify(context, {"INPUT": str(grid), "FEATURES": str(src), "MODEL": emd, "CLASS_LABEL_FIELD": "Damage"},
                        tmp_path, "named.gpkg")
    assert rows(named, "Damage") == [("m21",)]
    for bad, text in (("  ", "The class label field name is empty"), ("confidence", "cannot be called 'confidence'")):
        assert text in classify_error(context, {"INPUT": str(grid), "FEATURES": str(src), "MODEL": emd,
                                                "CLASS_LABEL_FIELD": bad}, tmp_path)


def test_multilabel_fields_are_text(context, tmp_path, grid):
    import torch
    from builders import export_onnx

    class Two(torch.nn.Module):
        def forward(self, x):
            c = x[:, 0].mean(dim=(1, 2))
            return torch.stack([(20.0 - c) * 4, c * 0 + 4.0], dim=1)

    export_onnx(Two(), tmp_path / "two.onnx", 1, 5)
    emd = write_object_emd(tmp_path / "two.emd", "two.onnx", tile=5, bands=[0], classes=[(1, "left"), (2, "any")],
                           MetaDataMode="MultiLabeled_Tiles")
    src = write_layer(tmp_path / "in.gpkg", [wkt_point(10.5, 10.5), wkt_point(40.5, 10.5)])
    layer, _ = classify(context, {"INPUT": str(grid), "FEATURES": str(src), "MODEL": str(emd)}, tmp_path)
    types = {f.name(): f.type() for f in layer.fields()}
    assert (types["ClassValue"], types["Confidence"]) == (QVariant.String, QVariant.String)
    s = 100 / (1 + np.exp(-4.0))
    assert rows(layer, "ClassLabel", "ClassValue", "Confidence") == [("left;any", "1;2", f"{100.0:.2f};{s:.2f}"),
                                                                      ("any", "2", f"{s:.2f}")]


def test_wrong_models_and_inputs(context, models, grid, tmp_path):
    src = write_layer(tmp_path / "in.gpkg", [wkt_point(20.3, 30.7)])
    pixel = json.loads(mean_emd(models, band=0, tile=7).read_text())
    pixel["ModelType"] = "ImageClassification"
    (models / "pixel.emd").write_text(json.dumps(pixel))
    assert "use Classify Pixels Using Deep Learning" in classify_error(
        context, {"INPUT": str(grid), "FEATURES": str(src), "MODEL": str(models / "pixel.emd")}, tmp_path)
    few = json.loads(mean_emd(models, band=0, tile=7).read_text())
    few["Classes"] = few["Classes"][:10]
    (models / "few.emd").write_text(json.dumps(few))
    assert f"returns {MEAN_CLASSES} class scores per chip but the model definition lists only 10 Classes: class index " \
           "10 (0-based) has no Classes entry" in classify_error(
               context, {"INPUT": str(grid), "FEATURES": str(src), "MODEL": str(models / "few.emd")}, tmp_path)
    emd = str(mean_emd(models, band=0, tile=7))
    assert classify_error(context, {"FEATURES": str(src), "MODEL": emd}, tmp_path) == \
        "No imagery: give an input raster or an image folder"
    # the dialog always has a raster (INPUT is required there): a folder given as well is the imagery, the log says so
    assert classify_error(context, {"INPUT": str(grid), "IMAGE_FOLDER": str(tmp_path), "FEATURES": str(src),
                                    "MODEL": emd}, tmp_path).startswith(f"Image folder '{tmp_path}' holds no images")


def test_cancel(context, models, grid, tmp_path):
    import processing

    src = write_layer(tmp_path / "in.gpkg", FEATURES)
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run(ALG, {"INPUT": str(grid), "FEATURES": str(src), "MODEL": str(mean_emd(models, band=0, tile=7)),
                             "OUTPUT": str(tmp_path / "c.gpkg")}, context=context, feedback=feedback)


# ------------------------------------------------------------------------------------------------ images as objects
def test_input_raster_without_features_is_one_object(context, models, grid, tmp_path):
    layer, _ = classify(context, {"INPUT": str(grid), "MODEL": str(mean_emd(models, band=0, tile=7))}, tmp_path)
    assert [f.name() for f in layer.fields()] == ["fid", "Image"] + NEW_FIELDS
    assert rows(layer, "Image", "ClassLabel") == [(str(grid), "m33")]  # the 7 x 7 chip at the centre: cols 29..35
    feature = next(layer.getFeatures())
    assert feature.geometry().boundingBox().toRectF().getCoords() == (ORIGIN[0], ORIGIN[1] - 64, ORIGIN[0] + 64,
                                                                      ORIGIN[1])
    assert layer.crs().authid() == f"EPSG:{EPSG}"


def _png(path: Path, value: int, size: tuple[int, int]) -> Path:
    mem = gdal.GetDriverByName("MEM").Create("", size[0], size[1], 3, gdal.GDT_Byte)
    for b in range(3):
        mem.GetRasterBand(b + 1).Fill(value if b == 0 else 1)
    gdal.GetDriverByName("PNG").CreateCopy(str(path), mem)
    return path


def test_image_folder_of_plain_pictures_gives_a_table(context, models, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    _png(folder / "a.png", 10, (10, 10))
    _png(folder / "b.png", 30, (40, 40))
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    layer, feedback = classify(context, {"IMAGE_FOLDER": str(folder),
                                         "MODEL": str(mean_emd(models, band=0, tile=5, crop_fixed=0))}, tmp_path)
    assert layer.wkbType() == QgsWkbTypes.NoGeometry
    assert rows(layer, "Image", "ClassLabel", "ClassValue") == [(str(folder / "a.png"), "m10", 20),
                                                               (str(folder / "b.png"), "m30", 60),
                                                               (str(folder / "broken.png"), None, None)]
    assert any(e.startswith("Image 'broken.png': no label, Cannot open raster") for e in feedback.errors)
    assert "The images are not georeferenced: the output is a table of image paths and labels" in feedback.infos


def _tile(path: Path, col0: int, width: int = 32) -> Path:
    """Columns col0..col0+width of the grid raster (same values), as a separate GeoTIFF."""
    rows_, cols = np.mgrid[0:64, col0:col0 + width]
    arr = np.stack([cols + 1, rows_ + 1, np.full_like(cols, 100)]).astype(np.uint16)
    return write_raster(path, arr, origin=(ORIGIN[0] + col0, ORIGIN[1]), cell=1.0, epsg=EPSG)


def test_image_folder_mosaicked_and_items_separately(context, models, tmp_path):
    folder = tmp_path / "tiles"
    folder.mkdir()
    _tile(folder / "left.tif", 0)
    _tile(folder / "right.tif", 32)
    emd = str(mean_emd(models, band=0, tile=7))
    # no features: each georeferenced image is one object, with its extent
    layer, _ = classify(context, {"IMAGE_FOLDER": str(folder), "MODEL": emd}, tmp_path, "images.gpkg")
    assert rows(layer, "Image", "ClassLabel") == [(str(folder / "left.tif"), "m17"), (str(folder / "right.tif"), "m49")]
    boxes = [f.geometry().boundingBox().toRectF().getCoords() for f in layer.getFeatures()]
    assert boxes == [(ORIGIN[0], ORIGIN[1] - 64, ORIGIN[0] + 32, ORIGIN[1]),
                     (ORIGIN[0] + 32, ORIGIN[1] - 64, ORIGIN[0] + 64, ORIGIN[1])]
    # features across the seam: mosaicked, one label each, the same as on the single raster
    feats = [wkt_point(32.0, 10.5), wkt_point(20.3, 30.7), wkt_point(100, 100)]
    src = write_layer(tmp_path / "in.gpkg", feats)
    mosaic, _ = classify(context, {"IMAGE_FOLDER": str(folder), "FEATURES": str(src), "MODEL": emd}, tmp_path, "m.gpkg")
    assert rows(mosaic, "name", "ClassLabel") == [("f0", "m33"), ("f1", "m21"), ("f2", None)]
    # items separately: a feature on both images gets a row for each, with the image's pixels only
    items, feedback = classify(context, {"IMAGE_FOLDER": str(folder), "FEATURES": str(src), "MODEL": emd,
                                         "PROCESSING_MODE": 1}, tmp_path, "items.gpkg")
    assert [f.name() for f in items.fields()] == ["fid", "input_fid", "name", "n", "Image"] + NEW_FIELDS
    assert sorted(rows(items, "input_fid", "name")) == [(1, "f0"), (1, "f0"), (2, "f1"), (3, "f2")]
    assert "A feature can be written once per image, so the input field 'fid' is written as 'input_fid'" in \
        feedback.infos
    assert sorted(rows(items, "name", "Image", "ClassLabel"), key=str) == sorted([
        ("f0", str(folder / "left.tif"), "m31"),    # cols 29..31 of the left image
        ("f0", str(folder / "right.tif"), "m34.5"),  # cols 32..35 of the right image
        ("f1", str(folder / "left.tif"), "m21"),
        ("f2", None, None)], key=str)
    assert "Feature 3: no label, it does not touch any image (or has no usable geometry)" in feedback.errors
    # a VRT mosaic as INPUT: its rasters are the items
    vrt = tmp_path / "tiles.vrt"
    gdal.BuildVRT(str(vrt), [str(folder / "left.tif"), str(folder / "right.tif")]).FlushCache()
    whole, _ = classify(context, {"INPUT": str(vrt), "MODEL": emd}, tmp_path, "vrt1.gpkg")
    assert rows(whole, "Image", "ClassLabel") == [(str(vrt), "m33")]
    parts, _ = classify(context, {"INPUT": str(vrt), "MODEL": emd, "PROCESSING_MODE": 1}, tmp_path, "vrt2.gpkg")
    assert rows(parts, "Image", "ClassLabel") == [(str(folder / "left.tif"), "m17"), (str(folder / "right.tif"), "m49")]


def test_spacenet_footprints_through_processing(context, testdata, tmp_path):
    raster = testdata("spacenet", "sample_geotiff.tif")
    footprints = testdata("spacenet", "geotiff_labels.geojson")
    import torch
    from builders import export_onnx

    class Bright(torch.nn.Module):
        def forward(self, x):
            b = x[:, 0]
            mask = (b != 0).to(torch.float32)
            m = (b * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1.0)
            return torch.stack([457.0 - m, m - 457.0], dim=1) / 50.0

    export_onnx(Bright(), tmp_path / "bright.onnx", 1, 64)
    emd = write_object_emd(tmp_path / "bright.emd", "bright.onnx", tile=64, bands=[0],
                           classes=[(1, "Dark"), (2, "Bright")], crop_fixed=0, blacken=1)
    chips = tmp_path / "chips"
    layer, feedback = classify(context, {"INPUT": str(raster), "FEATURES": str(footprints), "MODEL": str(emd),
                                         "ARGUMENTS": f"batch_size 16;padding 2;save_chips {chips}"}, tmp_path)
    source = QgsVectorLayer(str(footprints), "fp", "ogr")
    assert layer.featureCount() == source.featureCount() == 43
    labels = rows(layer, "ClassLabel")
    assert all(label in (("Dark",), ("Bright",)) for label in labels)
    assert {"Dark", "Bright"} == {label for (label,) in labels}
    assert [f.name() for f in layer.fields()][1:-3] == [f.name() for f in source.fields()]
    for out, src in zip(layer.getFeatures(), source.getFeatures()):
        assert out.attributes()[1:-3] == src.attributes()
    assert len(list(chips.glob("chip_*.png"))) == 43
    chip = gdal.Open(str(next(chips.glob("chip_*.png")))).ReadAsArray()
    assert chip.shape == (64, 64) and chip.dtype == np.uint16 and (chip == 0).any() and (chip > 0).any()
    assert "Batch size 16; onnxruntime on cpu (ONNX Runtime CPUExecutionProvider, 2 threads)" in feedback.infos


# ------------------------------------------------------------------------------------------------ model3, qgis_process
def _build_model3(path: Path) -> Path:
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFeatureSource,
        QgsProcessingParameterFile,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("Classify and pick", "Deep learning tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("imagery", "Imagery"),
                            QgsProcessingModelParameter("imagery"))
    model.addModelParameter(QgsProcessingParameterFeatureSource("objects", "Objects"),
                            QgsProcessingModelParameter("objects"))
    model.addModelParameter(QgsProcessingParameterFile("model_definition", "Model definition"),
                            QgsProcessingModelParameter("model_definition"))
    classify_child = QgsProcessingModelChildAlgorithm(ALG)
    classify_child.setChildId("classify")
    classify_child.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("imagery")])
    classify_child.addParameterSources("FEATURES", [QgsProcessingModelChildParameterSource.fromModelParameter("objects")])
    classify_child.addParameterSources("MODEL", [QgsProcessingModelChildParameterSource.fromModelParameter(
        "model_definition")])
    classify_child.addParameterSources("CLASS_LABEL_FIELD", [QgsProcessingModelChildParameterSource.fromStaticValue(
        "Kind")])
    classify_child.addParameterSources("DEVICE", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])
    model.addChildAlgorithm(classify_child)
    extract = QgsProcessingModelChildAlgorithm("native:extractbyattribute")
    extract.setChildId("pick")
    extract.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromChildOutput("classify", "OUTPUT")])
    extract.addParameterSources("FIELD", [QgsProcessingModelChildParameterSource.fromStaticValue("Kind")])
    extract.addParameterSources("OPERATOR", [QgsProcessingModelChildParameterSource.fromStaticValue(0)])
    extract.addParameterSources("VALUE", [QgsProcessingModelChildParameterSource.fromStaticValue("m16")])
    out = QgsProcessingModelOutput("picked")
    out.setChildId("pick")
    out.setChildOutputName("OUTPUT")
    extract.setModelOutputs({"picked": out})
    model.addChildAlgorithm(extract)
    assert model.toFile(str(path))
    return path


def test_model3_chains_classify_objects_and_extract(context, models, grid, tmp_path):
    import processing
    from qgis.core import QgsProcessingModelAlgorithm

    path = _build_model3(tmp_path / "classify.model3")
    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(path))
    assert sorted(c.algorithmId() for c in loaded.childAlgorithms().values()) == [ALG, "native:extractbyattribute"]
    src = write_layer(tmp_path / "in.gpkg", [FEATURES[2], wkt_rect(30, 30, 40, 40), FEATURES[3]], geom_type=ogr.wkbPolygon)
    out = tmp_path / "picked.gpkg"
    result = processing.run(loaded, {"imagery": str(grid), "objects": str(src),
                                     "model_definition": str(mean_emd(models, band=0, tile=7)),
                                     "pick:picked": str(out)}, context=context)
    assert result["pick:picked"] == str(out)
    picked = QgsVectorLayer(str(out), "picked", "ogr")
    assert rows(picked, "name", "Kind", "ClassValue") == [("f0", "m16", 32), ("f2", "m16", 32)]


needs_qgis_process = pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process.bin is not installed")


@needs_qgis_process
def test_qgis_process_run_and_error(models, grid, tmp_path):
    src = write_layer(tmp_path / "in.gpkg", FEATURES)
    out = tmp_path / "qp.gpkg"
    answer = qgis_process_util.qgis_process_json(ALG, {"INPUT": grid, "FEATURES": src, "DEVICE": 1,
                                                       "MODEL": mean_emd(models, band=1, tile=7),
                                                       "ARGUMENTS": "batch_size 2", "OUTPUT": out}, tmp_path)
    assert answer["results"] == {"OUTPUT": str(out)}
    assert "Labels: m8 1, m16 1, m26 1, m31 1, m62 1" in answer["log"]["info"]
    ds = ogr.Open(str(out))
    got = [(f.GetField("name"), f.GetField("ClassLabel")) for f in ds.GetLayer()]
    assert got == [("f0", "m31"), ("f1", "m8"), ("f2", "m26"), ("f3", "m16"), ("f4", "m62"), ("f5", None)]
    bad = json.loads(mean_emd(models, band=0, tile=7).read_text())
    bad["ExtractBands"] = [5]
    (models / "band5.emd").write_text(json.dumps(bad))
    message = qgis_process_util.qgis_process_failure(ALG, {"INPUT": grid, "FEATURES": src, "MODEL": models / "band5.emd",
                                                           "OUTPUT": tmp_path / "x.gpkg"}, tmp_path)
    assert "The model needs band 6 (ExtractBands [5], 0-based) but raster 'grid.tif' has only 3 band(s)" in message

