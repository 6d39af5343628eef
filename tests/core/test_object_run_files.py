# SPDX-License-Identifier: GPL-2.0-or-later
"""The files a Classify Objects run in a child process reads and writes: every feature's key and geometry go in
as they were (no geometry stays no geometry), and the rows come back as they were written."""

from __future__ import annotations

from pathlib import Path

import pytest
from dltools.core.errors import InputDataError
from dltools.core.progress import NullProgress
from dltools.core.tools.classify_objects.pipeline import ObjectRow, OgrFeatures
from dltools.core.tools.classify_objects.separate import FeatureFile, _row_line, read_rows, write_feature_file
from osgeo import ogr, osr


def _layer(path: Path) -> Path:
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    layer = ds.CreateLayer("f", srs, ogr.wkbUnknown)
    layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    for wkt in ("POINT (1 2)", None, "POLYGON ((0 0,1 0,1 1,0 0))"):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("name", "x")
        if wkt:
            feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    ds = None
    return path


class _WithOperation(OgrFeatures):
    def operation(self, target_crs_wkt: str) -> str:
        return "+proj=pipeline +step +proj=noop" if target_crs_wkt else ""


def test_features_round_trip_with_their_operations(tmp_path):
    source = _WithOperation(str(_layer(tmp_path / "f.gpkg")))
    target = osr.SpatialReference()
    target.ImportFromEPSG(4326)
    path = write_feature_file(str(tmp_path / "f.bin"), source, [target.ExportToWkt()], NullProgress())
    back = FeatureFile(path)
    assert (back.name, back.crs_wkt, back.field_names, back.count()) == ("f", source.crs_wkt, ["name"], 3)
    assert [(k, w) for k, w, _ in back.features()] == [(k, w) for k, w, _ in source.features()]
    assert [p for _, _, p in back.features([3])] == [3] and list(back.features([2]))[0][1] is None
    assert back.operation(target.ExportToWkt()) == "+proj=pipeline +step +proj=noop"
    assert back.operation(source.crs_wkt) == ""
    Path(path).write_bytes(Path(path).read_bytes()[:-3])
    with pytest.raises(InputDataError, match="cut short"):
        list(FeatureFile(path).features())


def test_two_features_of_one_id_are_refused(tmp_path):
    class Twice(OgrFeatures):
        def features(self, keys=None):  # noqa: ANN001, ANN202
            for _key, wkb, payload in super().features(keys):
                yield 1, wkb, payload

    with pytest.raises(InputDataError, match="Layer 'f' has two features with the id 1"):
        write_feature_file(str(tmp_path / "f.bin"), Twice(str(_layer(tmp_path / "f.gpkg"))), [], NullProgress())


def test_rows_round_trip(tmp_path):
    import numpy as np

    rows = [ObjectRow(7, ["a", np.int64(3), np.float32(0.5)]), ObjectRow(None, ["img.tif", None, None, None], b"\x01\x02"),
            ObjectRow(8, ["a;b", "1;2", "90;80"], None)]
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"".join(_row_line(r) for r in rows))
    back = list(read_rows(str(path)))
    assert [(r.payload, r.values, r.geometry_wkb) for r in back] == [
        (7, ["a", 3, 0.5], None), (None, ["img.tif", None, None, None], b"\x01\x02"), (8, ["a;b", "1;2", "90;80"], None)]
