# SPDX-License-Identifier: GPL-2.0-or-later
"""Outputs of the algorithms that never destroy what was there before (the QGIS side of core.safe_output).

* :func:`file_of` turns what QGIS gives for a layer or a destination (``x.gpkg|layername=a``,
  ``ogr:dbname='x.gpkg' table="t"``, ``memory:``) into the file behind it, so that
  :func:`refuse_same_files` can refuse an output that is one of the inputs before anything is written.
* :func:`geotiff_problem` says why a raster destination is not a GeoTIFF name: core's BlockWriter writes GeoTIFF
  only, so ``out.img`` is refused rather than written as a GeoTIFF under a misleading name.
* :class:`AtomicSink` is ``parameterAsSink`` writing under a temporary name beside the target: the target
  changes only when the run succeeds, a cancel or failure leaves it (and no partial ``.gpkg`` or
  ``-journal``) as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Mapping
from typing import Any

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameters,
    QgsVectorLayer,
    QgsWkbTypes,
)

from ..core.errors import DLToolsError
from ..core.safe_output import OutputSet, no_space_message, refuse_overlap

#: Free bytes under which a failed write is taken for a full disk.
_NEARLY_FULL = 1 << 20
_OGR_DBNAME = re.compile(r"""^ogr:dbname=(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|(\S+))""")


def file_of(value: Any) -> str | None:
    """The file behind a layer source or an output destination; None for memory layers and databases."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.startswith(("memory:", "postgres:", "postgis:", "mssql:", "oracle:", "/vsimem/")) or \
            text == "TEMPORARY_OUTPUT":
        return None
    match = _OGR_DBNAME.match(text)
    if match:
        return next(g for g in match.groups() if g is not None).replace("\\'", "'")
    return text.split("|", 1)[0]


#: What the raster outputs are (core.raster.gdal_io.BlockWriter writes tiled GeoTIFF only): the provider offers only
#: these in the dialogs, and the algorithms refuse any other file name.
GEOTIFF_EXTENSIONS = ("tif", "tiff")


def geotiff_problem(name: str, value: Any) -> str | None:
    """Why the destination ``value`` of raster output ``name`` cannot be written, or None when it is a GeoTIFF name.

    Only file names are judged: TEMPORARY_OUTPUT and empty values (QGIS resolves them to a ``.tif``) pass.
    """
    path = file_of(value)
    if not path:
        return None
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext in GEOTIFF_EXTENSIONS:
        return None
    found = f"'.{ext}'" if ext else "no extension"
    return (f"{name}: '{path}' has {found}, but this tool writes GeoTIFF only: name the file .tif or .tiff "
            "(nothing was written)")


def output_destination(alg, parameters: Mapping[str, Any], name: str, context) -> str:  # noqa: ANN001
    """Where the destination parameter ``name`` will write (``memory:...`` for a temporary layer), without the side
    effect of ``parameterAsOutputLayer``: in QGIS 3.22 that call also registers the value as a layer to load on
    completion, and for a temporary sink ("memory:<description>") no such layer ever exists, so the dialog ended
    every successful run with "The following layers were not correctly generated"."""
    before = context.layersToLoadOnCompletion()
    try:
        return QgsProcessingParameters.parameterAsOutputLayer(alg.parameterDefinition(name), parameters.get(name),
                                                              context) or ""
    finally:
        context.setLayersToLoadOnCompletion(before)


def result_layer_name(inputs: str, what: str) -> str:
    """The ArcGIS-style name of a result, from its input and the tool ("squares — detected objects"): the layer
    QGIS loads and the layer inside a new GeoPackage file are both called this."""
    return f"{inputs} — {what}" if inputs else ""


def name_result_layer(alg, context, name: str, dest: str | None, inputs: str, what: str) -> None:  # noqa: ANN001
    """Name the layer that output ``name`` loads as ArcGIS does, from the input and the tool: "squares — detected
    objects" rather than the output's label ("Detected objects"), in the dialog and wherever Processing loads it.

    Only a name nobody chose is replaced: a Graphical Modeler's output or a script's ``destinationName`` stays,
    and Processing's "use the file name as layer name" setting still wins when it loads the layer.
    """
    if not dest or not inputs or not context.willLoadLayerOnCompletion(dest):
        return
    details = context.layerToLoadOnCompletionDetails(dest)
    definition = alg.parameterDefinition(name)
    if details.name in ("", definition.description() if definition is not None else ""):
        details.name = result_layer_name(inputs, what)


#: Field names a tool's field parameters cannot take: a GeoPackage keeps the feature id in "fid" and the geometry in
#: "geom", and OGR fails on a second one, after the run, naming a temporary file.
RESERVED_FIELD_NAMES = ("fid", "geom")


def refuse_reserved_field(parameter: str, name: str) -> None:
    """Refuse a field name an output file cannot hold, before the run, naming the parameter."""
    if name.strip().lower() in RESERVED_FIELD_NAMES:
        raise QgsProcessingException(
            f"{parameter} '{name}': '{name.strip().lower()}' is reserved for the GeoPackage's own "
            f"{'feature id' if name.strip().lower() == 'fid' else 'geometry'} column; choose another field name "
            "(nothing was written)")


def refuse_same_files(outputs: Mapping[str, Any], inputs: Mapping[str, Any]) -> None:
    """Refuse an output that is one of the inputs (or another output), naming both parameters."""
    try:
        refuse_overlap({k: file_of(v) for k, v in outputs.items()}, {k: file_of(v) for k, v in inputs.items()})
    except DLToolsError as exc:
        raise QgsProcessingException(str(exc)) from exc


class AtomicSink:
    """A feature sink for the algorithm's ``name`` parameter, written under a temporary name until success.

    ``with AtomicSink(alg, parameters, name, context, fields, wkb, crs) as sink: sink.add(feature)``; leaving the
    block normally closes the file and renames it onto the target (``sink.dest`` is then the target, and a layer
    QGIS loads on completion is the target); an exception closes and deletes the temporary file.  Memory and
    database outputs are written directly: they have nothing on disk to lose.
    """

    def __init__(self, alg, parameters: Mapping[str, Any], name: str, context, fields, wkb_type, crs,  # noqa: ANN001
                 layer_name: str = "") -> None:
        self.alg, self.name, self.context = alg, name, context
        self.layer_name = layer_name
        self.parameters = dict(parameters)
        self.fields, self.wkb_type, self.crs = fields, wkb_type, crs
        self.outputs = OutputSet()
        self.sink = None
        self.dest = ""
        self._tmp_dest = ""
        self._target = ""
        self._tmp = ""
        self._in_file = False
        self.added = 0

    def __enter__(self) -> AtomicSink:
        value = self.parameters.get(self.name)
        target = output_destination(self.alg, self.parameters, self.name, self.context)
        path = file_of(target)
        params = self.parameters
        if path:
            params = self._temporary_parameters(value, target, path)
        try:
            sink, dest = self.alg.parameterAsSink(params, self.name, self.context, self.fields, self.wkb_type,
                                                  self.crs)
        except Exception as exc:  # noqa: BLE001 - QGIS raises its own types; the message is all we keep
            self.outputs.discard()
            text = str(exc).replace(self._tmp, self._target) if self._tmp else str(exc)
            raise QgsProcessingException(f"{self.name}: {text}") from None
        if sink is None:
            self.outputs.discard()
            raise QgsProcessingException(self.alg.invalidSinkError(self.parameters, self.name))
        self.sink, self._tmp_dest = sink, dest
        self.dest = dest.replace(self._tmp, self._target, 1) if self._tmp else dest
        if self._tmp and file_of(target) == target:
            self.dest = self._target  # a plain file name comes back as given (its one layer is the output)
        return self

    def _temporary_parameters(self, value: Any, target: str, path: str) -> dict[str, Any]:
        """The parameters with this output pointed at a temporary file beside ``path``.

        ``ogr:dbname='x.gpkg' table="t" (geom)`` (the dialog's "Save to GeoPackage…") adds a layer to an existing
        file: the temporary file starts as a copy of it, so its other layers stay, and gets a dot-free name (QGIS
        finds the driver from everything after the name's first dot). A plain ``x.gpkg`` names its layer after
        ``layer_name`` (the ArcGIS-style "squares — detected objects" the layer loads as), or after the file when the
        tool gives none (the hidden temporary name would give it an empty name).
        """
        in_file = target != path
        self._in_file = in_file
        try:
            tmp = self.outputs.path_for(path, plain_name=in_file)
        except DLToolsError as exc:
            raise QgsProcessingException(str(exc)) from exc
        self._target, self._tmp = path, tmp
        if in_file and os.path.isfile(path):
            try:
                shutil.copy2(path, tmp)
            except OSError as exc:
                self.outputs.discard()
                raise QgsProcessingException(f"{self.name}: cannot copy '{path}' to add a layer to it: {exc}") from exc
        options = dict(value.createOptions) if isinstance(value, QgsProcessingOutputLayerDefinition) else {}
        if not in_file and os.path.splitext(path)[1].lower() == ".gpkg":
            options.setdefault("layerName", self.layer_name or os.path.splitext(os.path.basename(path))[0])
        replacement = QgsProcessingOutputLayerDefinition(target.replace(path, tmp, 1))
        replacement.createOptions = options
        if isinstance(value, QgsProcessingOutputLayerDefinition):  # "Open output file after running" too
            replacement.destinationName = value.destinationName
            replacement.destinationProject = value.destinationProject
        params = dict(self.parameters)
        params[self.name] = replacement
        return params

    def side_path(self, suffix: str) -> str | None:
        """Where a side file (``.qml``) goes so that it follows the output: beside the temporary file, renamed with
        it on success; None for memory and database outputs, and for a layer added to an existing file."""
        if not self._tmp or self._in_file:
            return None  # "x.qml" beside a GeoPackage is the default style of every layer in it, not just ours
        return os.path.splitext(self._tmp)[0] + suffix

    def add(self, feature, flags) -> bool:  # noqa: ANN001
        if self.sink.addFeature(feature, flags):
            self.added += 1
            return True
        self._raise_if_disk_full()
        self._raise_if_other_geometry(feature)
        return False

    def _raise_if_other_geometry(self, feature) -> None:  # noqa: ANN001
        """A layer of mixed geometries (a GeoPackage 'Geometry' layer) reaches QGIS as the first feature's type; a
        temporary layer holds only that type and refuses the others: say so, and what to do, rather than "Could not
        write feature"."""
        if self._tmp or not feature.hasGeometry():
            return
        got = QgsWkbTypes.geometryType(feature.geometry().wkbType())
        if got != QgsWkbTypes.geometryType(self.wkb_type):
            raise QgsProcessingException(
                f"{self.name}: a feature is a {QgsWkbTypes.geometryDisplayString(got).lower()} but the layer is of "
                f"{QgsWkbTypes.displayString(self.wkb_type)} features (the input mixes geometry types), "
                "and a temporary layer holds one type only: save the output to a GeoPackage file, which holds any")

    def written_name(self, field: str) -> str:
        """The name ``field`` has in the file as written, once :meth:`close` has flushed it: a shapefile cuts
        names to 10 characters (``ConfidenceScore`` -> ``Confidence``), so a style must name the field the file
        has, not the one asked for. Memory and database outputs keep their names."""
        index = self.fields.lookupField(field)
        if not self._tmp or index < 0:
            return field
        layer = QgsVectorLayer(self._tmp_dest, "written", "ogr")
        written = [f.name() for f in layer.fields()] if layer.isValid() else []
        del layer
        offset = len(written) - self.fields.count()  # a GeoPackage adds its fid column first
        return written[index + offset] if offset >= 0 and index + offset < len(written) else field

    def _raise_if_disk_full(self) -> None:
        """OGR reports a full disk only as a failed write: say what it is when the output's disk has no room left."""
        if not self._tmp:
            return
        with contextlib.suppress(OSError):
            if shutil.disk_usage(os.path.dirname(os.path.abspath(self._tmp))).free < _NEARLY_FULL:
                raise QgsProcessingException(no_space_message(self._target, OSError(errno.ENOSPC, "")))

    def _check_written(self) -> None:
        """After closing: every feature reached the file (a full disk can make the final flush fail silently)."""
        if not self._tmp:
            return
        layer = QgsVectorLayer(self._tmp_dest, "written", "ogr")
        count = layer.featureCount() if layer.isValid() else -1
        del layer
        if count != self.added:
            self._raise_if_disk_full()
            raise QgsProcessingException(f"The output '{self._target}' could not be written completely ({count} of "
                                         f"{self.added} features): nothing was kept")

    def close(self) -> None:
        """Flush and close the file (the sink's C++ object goes with its last Python reference)."""
        if self.sink is not None:
            with contextlib.suppress(Exception):
                self.sink.flushBuffer()
            self.sink = None

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
        if exc_type is not None:
            self.outputs.discard()
            return
        try:
            self._check_written()
        except QgsProcessingException:
            self.outputs.discard()
            raise
        try:
            self.outputs.commit()
        except DLToolsError as error:
            self.outputs.discard()
            raise QgsProcessingException(str(error)) from error
        if self._tmp and self.context.willLoadLayerOnCompletion(self._tmp_dest):
            layers = self.context.layersToLoadOnCompletion()
            details = layers.pop(self._tmp_dest)
            layers[self.dest] = details
            self.context.setLayersToLoadOnCompletion(layers)
