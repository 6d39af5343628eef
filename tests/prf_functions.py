# SPDX-License-Identifier: GPL-2.0-or-later
"""Python raster functions written for the tests, following Esri's contract, with outputs a test can predict.

Each is the text of a ``.py`` file; :func:`write_function` puts it next to an .emd that names it.
"""

from __future__ import annotations

import json
from pathlib import Path

_COMMON = '''
import json

import numpy as np


def read_model(model):
    """Esri's way: an .emd path, else the JSON text."""
    try:
        with open(model, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return json.loads(model)


PARAMS = [
    {"name": "raster", "dataType": "raster", "required": True, "displayName": "Raster", "description": "input"},
    {"name": "model", "dataType": "string", "required": True, "displayName": "Model", "description": "emd"},
    {"name": "device", "dataType": "numeric", "required": False, "displayName": "Device", "description": "gpu id"},
]
'''

#: Classify Pixels: class 2 where the pixel to the RIGHT of each pixel (read from the padding at tile edges)
#: is above ``threshold`` in band 2 (extractBands (1,)), else class 1; ``invert`` swaps them.
NEIGHBOUR_CLASSIFIER = _COMMON + '''

class NeighbourClassifier:
    def __init__(self):
        self.name = "Neighbour classifier"
        self.description = "class from the right-hand neighbour"

    def initialize(self, **kwargs):
        self.json_info = read_model(kwargs["model"])
        self.device = kwargs.get("device")

    def getParameterInfo(self):
        return PARAMS + [
            {"name": "threshold", "dataType": "numeric", "value": 100, "required": False,
             "displayName": "Threshold", "description": "Band 2 value above which a pixel is class 2."},
            {"name": "invert", "dataType": "boolean", "value": "False", "required": False,
             "displayName": "Invert", "description": "Swap the two classes."},
            {"name": "mode", "dataType": "string", "value": "right", "required": False, "domain": ("right", "left"),
             "displayName": "Mode", "description": "Which neighbour."},
        ]

    def getConfiguration(self, **scalars):
        self.threshold = float(scalars.get("threshold", 100))
        self.invert = str(scalars.get("invert", "False")).lower() == "true"
        self.scalars = scalars
        return {"extractBands": (1,), "padding": 1, "tx": 10, "ty": 8, "inputMask": True,
                "inheritProperties": 2 | 4 | 8, "batch_size": 1}

    def updateRasterInfo(self, **kwargs):
        kwargs["output_info"]["bandCount"] = 1
        kwargs["output_info"]["pixelType"] = "u1"
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        pix = pixelBlocks["raster_pixels"]  # (bands, rows, columns); a single-band output's shape is (rows, columns)
        assert pix.shape == (1, shape[0] + 2, shape[1] + 2), pix.shape
        assert pixelBlocks["raster_mask"].shape == pix.shape
        right = pix[0, 1:-1, 2:].astype(float)
        high = right > self.threshold
        if self.invert:
            high = ~high
        pixelBlocks["output_pixels"] = (1 + high).astype(props["pixelType"])
        return pixelBlocks
'''

#: Detect Change: class 1 where band 1 of the later date is greater than band 1 of the earlier date.
CHANGE_FUNCTION = _COMMON + '''

class Growth:
    def initialize(self, **kwargs):
        self.json_info = read_model(kwargs["model"])

    def getParameterInfo(self):
        return PARAMS + [{"name": "margin", "dataType": "numeric", "value": 0, "required": False,
                          "displayName": "Margin", "description": "how much larger"}]

    def getConfiguration(self, **scalars):
        self.margin = float(scalars.get("margin", 0))
        return {"extractBands": (0, 2), "padding": 0, "tx": 16, "ty": 16}

    def updateRasterInfo(self, **kwargs):
        kwargs["output_info"]["bandCount"] = 1
        kwargs["output_info"]["pixelType"] = "u1"
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        before, after = pixelBlocks["raster_pixels"].astype(float)
        pixelBlocks["output_pixels"] = (after > before + self.margin).astype(np.uint8)[None]
        return pixelBlocks
'''

#: Classify Objects: "bright" when a chip's mean of band 1 is above 100, else "dark"; confidence 0-100.
OBJECT_CLASSIFIER = _COMMON + '''

class Brightness:
    def initialize(self, **kwargs):
        self.json_info = read_model(kwargs["model"])
        self.calls = 0

    def getParameterInfo(self):
        return [{"name": "rasters", "dataType": "rasters", "required": True, "displayName": "Rasters",
                 "description": "chips"}] + PARAMS[1:] + [
            {"name": "batch_size", "dataType": "numeric", "value": 4, "required": False,
             "displayName": "Batch size", "description": "chips per call"}]

    def getConfiguration(self, **scalars):
        return {"batch_size": int(scalars.get("batch_size", 4)), "CropSizeFixed": 1, "BlackenAroundFeature": 0,
                "inputMask": True}

    def vectorize(self, **pixelBlocks):
        chips = pixelBlocks["rasters_pixels"]
        masks = pixelBlocks["rasters_mask"]
        assert len(chips) == len(masks)
        features = []
        for chip in chips:
            mean = float(np.asarray(chip)[0].mean())
            label = "bright" if mean > 100 else "dark"
            features.append({"attributes": {"Label": label, "Confidence": 75.0 if label == "bright" else 60.0},
                             "geometry": {"rings": [[[0, 0], [0, 1], [1, 1], [1, 0], [0, 0]]]}})
        return {"output_vectors": json.dumps({"features": features})}
'''


#: Detect Objects: a one-pixel box around every pixel of band 1 that is 255 inside the block (not its padding),
#: class "spot" (or "big spot" where band 2 is also 255), confidence 0.9 (0-1, as RDL's detectors give it).
DETECTOR = _COMMON + '''

class SpotDetector:
    def initialize(self, **kwargs):
        self.json_info = read_model(kwargs["model"])

    def getParameterInfo(self):
        return PARAMS + [{"name": "padding", "dataType": "numeric", "value": 2, "required": False,
                          "displayName": "Padding", "description": "context pixels"}]

    def getConfiguration(self, **scalars):
        self.padding = int(scalars.get("padding", 2))
        return {"padding": self.padding, "tx": 16, "ty": 12, "inputMask": True, "extractBands": (0, 1)}

    def getFields(self):
        return json.dumps({"fields": [{"name": "Class", "type": "esriFieldTypeString"},
                                      {"name": "Confidence", "type": "esriFieldTypeDouble"},
                                      {"name": "Brightness", "type": "esriFieldTypeInteger"}]})

    def getGeometryType(self):
        return 4

    def vectorize(self, **pixelBlocks):
        p = self.padding
        pix = pixelBlocks["raster_pixels"]
        core = pix[:, p:pix.shape[1] - p, p:pix.shape[2] - p]
        features = []
        for r, c in zip(*np.nonzero(core[0] == 255)):
            name = "big spot" if core[1, r, c] == 255 else "spot"
            ring = [[int(c), int(r)], [int(c) + 1, int(r)], [int(c) + 1, int(r) + 1], [int(c), int(r) + 1],
                    [int(c), int(r)]]
            features.append({"attributes": {"Class": name, "Confidence": 0.9, "Brightness": int(core[1, r, c])},
                             "geometry": {"rings": [ring]}})
        return {"output_vectors": json.dumps({"features": features})}
'''


#: Only getParameterInfo, updateRasterInfo (band count only) and updatePixels: no initialize, no getConfiguration,
#: as Esri's general raster functions are written.  The sum of every band, in the pixel type inherited.
BAND_SUM = '''
import numpy as np


class BandSum:
    def getParameterInfo(self):
        return [{"name": "raster", "dataType": "raster", "value": None, "required": True}]

    def updateRasterInfo(self, **kwargs):
        kwargs["output_info"]["bandCount"] = 1
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        pixels = pixelBlocks["raster_pixels"].astype(np.uint32)
        pixelBlocks["output_pixels"] = pixels.sum(axis=0).astype(props["pixelType"])
        return pixelBlocks
'''

#: A normalised difference whose output type follows the user's 'method', read in updateRasterInfo (as Esri's NDVI
#: reads it): 'raw' float32, 'scaled' uint8 100 + 100 x index; raster_info must describe the two bands extracted.
INDEX = '''
import numpy as np


class Index:
    def getParameterInfo(self):
        return [
            {"name": "raster", "dataType": "raster", "value": None, "required": True},
            {"name": "red", "dataType": "numeric", "value": 1, "required": True},
            {"name": "nir", "dataType": "numeric", "value": 2, "required": True},
            {"name": "method", "dataType": "string", "value": "scaled", "required": False,
             "domain": ("raw", "scaled")},
        ]

    def getConfiguration(self, **scalars):
        return {"extractBands": (int(scalars["red"]) - 1, int(scalars["nir"]) - 1), "inheritProperties": 4 | 8}

    def updateRasterInfo(self, **kwargs):
        if kwargs["raster_info"]["bandCount"] != 2:
            raise ValueError("raster_info describes %d bands" % kwargs["raster_info"]["bandCount"])
        self.raw = kwargs["method"].lower() == "raw"
        kwargs["output_info"]["bandCount"] = 1
        kwargs["output_info"]["pixelType"] = "f4" if self.raw else "u1"
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        red, nir = pixelBlocks["raster_pixels"].astype("f4")
        with np.errstate(divide="ignore", invalid="ignore"):
            index = (nir - red) / (nir + red)
        if not self.raw:
            index = index * 100.0 + 100.0
        pixelBlocks["output_pixels"] = index.astype(props["pixelType"])
        return pixelBlocks

    def updateKeyMetadata(self, names, bandIndex, **keyMetadata):
        if bandIndex == -1:
            keyMetadata["datatype"] = "Processed"
        elif bandIndex == 0:
            keyMetadata["bandname"] = "Index"
        return keyMetadata
'''

#: A raster parameter that is not called 'raster': (dem - its minimum from dem_info's statistics) x z, type and NoData
#: inherited.
DEM_FUNCTION = '''
import numpy as np


class Dem:
    def getParameterInfo(self):
        return [{"name": "dem", "dataType": "raster", "value": None, "required": True},
                {"name": "z", "dataType": "numeric", "value": 1, "required": False}]

    def getConfiguration(self, **scalars):
        self.z = int(scalars.get("z", 1))
        return {"inputMask": True, "padding": 0}

    def updateRasterInfo(self, **kwargs):
        assert kwargs["dem_info"]["bandCount"] == 1 and kwargs["z"] == self.z
        self.low = kwargs["dem_info"]["statistics"][0]["minimum"]
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        assert pixelBlocks["dem_mask"].shape == pixelBlocks["dem_pixels"].shape
        pixelBlocks["output_pixels"] = ((pixelBlocks["dem_pixels"] - self.low) * self.z).astype(props["pixelType"])
        return pixelBlocks
'''

#: A 'rasters' parameter (tuples) and keyMetadata: band 2 plus 8 when the input's SensorName is Landsat-8.
SENSOR_OFFSET = '''
import numpy as np


class Sensor:
    def getParameterInfo(self):
        return [{"name": "rasters", "dataType": "rasters", "value": None, "required": True}]

    def getConfiguration(self, **scalars):
        return {"extractBands": (1,), "keyMetadata": ("SensorName",)}

    def updateRasterInfo(self, **kwargs):
        infos, metadata = kwargs["rasters_info"], kwargs["rasters_keyMetadata"]
        assert isinstance(infos, tuple) and len(infos) == 1 and infos[0]["bandCount"] == 1
        assert set(metadata[0]) == {"SensorName"}
        self.offset = 8 if metadata[0]["SensorName"] == "Landsat-8" else 0
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        (pixels,) = pixelBlocks["rasters_pixels"]
        pixelBlocks["output_pixels"] = (pixels + self.offset).astype(props["pixelType"])
        return pixelBlocks
'''

#: Detect Change with two raster parameters: 1 where band 2 of r2 (the later date) is above band 2 of r1.
TWO_DATES = '''
import numpy as np


class TwoDates:
    def getParameterInfo(self):
        return [{"name": "r1", "dataType": "raster", "value": None, "required": True},
                {"name": "r2", "dataType": "raster", "value": None, "required": True}]

    def getConfiguration(self, **scalars):
        return {"extractBands": (1,)}

    def updateRasterInfo(self, **kwargs):
        assert kwargs["r1_info"]["bandCount"] == kwargs["r2_info"]["bandCount"] == 1
        kwargs["output_info"]["pixelType"] = "u1"
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        later, earlier = pixelBlocks["r2_pixels"][0], pixelBlocks["r1_pixels"][0]  # band 2 of each date
        assert later.shape == earlier.shape == shape
        pixelBlocks["output_pixels"] = (later > earlier).astype(props["pixelType"])
        return pixelBlocks
'''


#: A second raster parameter given by path in the arguments ('other /path.tif'): raster band 1 + other band 1.
TWO_RASTERS = '''
import numpy as np


class TwoRasters:
    def getParameterInfo(self):
        return [{"name": "raster", "dataType": "raster", "value": None, "required": True},
                {"name": "other", "dataType": "raster", "value": None, "required": True},
                {"name": "gain", "dataType": "numeric", "value": 1, "required": False}]

    def getConfiguration(self, **scalars):
        assert "other" not in scalars  # scalars only
        self.gain = float(scalars["gain"])
        return {"extractBands": (0,), "inputMask": True}

    def updateRasterInfo(self, **kwargs):
        assert kwargs["other_info"]["bandCount"] == 2 and "other" not in kwargs
        kwargs["output_info"]["pixelType"] = "f4"
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        other = pixelBlocks["other_pixels"]
        assert other.shape == (2, shape[0], shape[1]) and pixelBlocks["other_mask"].shape == other.shape
        total = pixelBlocks["raster_pixels"].astype("f4") + self.gain * other[0].astype("f4")
        pixelBlocks["output_pixels"] = total.astype(props["pixelType"])
        return pixelBlocks
'''


def raising(after_blocks: int = 1) -> str:
    """A pixel function that raises on its block number ``after_blocks`` (0-based)."""
    return _COMMON + f'''

class Raiser:
    def initialize(self, **kwargs):
        self.n = 0

    def getParameterInfo(self):
        return PARAMS

    def getConfiguration(self, **scalars):
        return {{"padding": 0, "tx": 10, "ty": 10}}

    def updateRasterInfo(self, **kwargs):
        kwargs["output_info"]["pixelType"] = "u1"
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        if self.n == {after_blocks}:
            self.explode(pixelBlocks)
        self.n += 1
        pixelBlocks["output_pixels"] = np.zeros(shape, np.uint8)
        return pixelBlocks

    def explode(self, blocks):
        return blocks["no such key"]
'''


def slow(seconds: float) -> str:
    """A pixel function that takes ``seconds`` for every block (class 1 everywhere): a slow model to cancel."""
    return _COMMON + f'''
import time


class Slow:
    def initialize(self, **kwargs):
        pass

    def getParameterInfo(self):
        return PARAMS

    def getConfiguration(self, **scalars):
        return {{"padding": 0, "tx": 8, "ty": 8, "batch_size": 1}}

    def updateRasterInfo(self, **kwargs):
        kwargs["output_info"]["bandCount"] = 1
        kwargs["output_info"]["pixelType"] = "u1"
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        time.sleep({seconds})
        pixelBlocks["output_pixels"] = np.ones(shape, np.uint8)
        return pixelBlocks
'''


def wrong(kind: str) -> str:
    """A pixel function that breaks the contract: ``shape`` or ``dtype``."""
    body = ("np.zeros((shape[0] - 1, shape[1]), np.uint8)" if kind == "shape"
            else "np.full(shape, 1.5, np.float64)")
    return _COMMON + f'''

class Wrong:
    def initialize(self, **kwargs):
        pass

    def getParameterInfo(self):
        return PARAMS

    def getConfiguration(self, **scalars):
        return {{"padding": 2, "tx": 10, "ty": 10}}

    def updateRasterInfo(self, **kwargs):
        kwargs["output_info"]["bandCount"] = 1
        kwargs["output_info"]["pixelType"] = "u1"
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        pixelBlocks["output_pixels"] = {body}
        return pixelBlocks
'''


def write_function(folder: Path, name: str, source: str, *, model_type: str = "ImageClassification",
                   classes: tuple = ((1, "low", (0, 0, 255)), (2, "high", (255, 0, 0))), tile: int = 12,
                   **extra) -> Path:
    """``<name>.py`` with ``source`` and ``<name>.emd`` naming it; returns the .emd."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(source, encoding="utf-8")
    emd = {"ModelType": model_type, "InferenceFunction": f"{name}.py", "ImageHeight": tile, "ImageWidth": tile,
           "Classes": [{"Value": v, "Name": n, "Color": list(c)} for v, n, c in classes]}
    emd.update(extra)
    path = folder / f"{name}.emd"
    path.write_text(json.dumps(emd, indent=2), encoding="utf-8")
    return path
