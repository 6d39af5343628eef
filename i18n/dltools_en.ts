<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1">
<context>
    <name>CheckLibrariesAlgorithm</name>
    <message>
        <location filename="../algorithms/check_libraries.py" line="31"/>
        <source>Check Inference Libraries</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/check_libraries.py" line="34"/>
        <source>Reports the inference libraries QGIS&apos;s Python has: ONNX Runtime, PyTorch, torchvision, Dask and numpy, each with its version, the folder it was loaded from (QGIS&apos;s Python or the plugin&apos;s own folder) and the devices it sees (ONNX Runtime&apos;s execution providers, the GPUs torch.cuda sees). Install Inference Libraries installs what is missing.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/check_libraries.py" line="41"/>
        <source>Report (JSON)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/check_libraries.py" line="45"/>
        <source>Report</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>ClassifyObjectsAlgorithm</name>
    <message>
        <location filename="../algorithms/classify_objects.py" line="55"/>
        <source>Classify Objects Using Deep Learning</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/classify_objects.py" line="90"/>
        <source>Input raster</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/classify_objects.py" line="106"/>
        <source>Class label field</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/classify_objects.py" line="122"/>
        <source>Classified objects</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/classify_objects.py" line="94"/>
        <source>…or an image folder, used instead of the input raster</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/classify_objects.py" line="100"/>
        <source>Input features (empty: each image is one object)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/classify_objects.py" line="114"/>
        <source>Cell size (online layers)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/classify_objects.py" line="58"/>
        <source>Gives every feature (or every image) one label from a trained image classifier, e.g. building footprints over post-fire imagery -&gt; Damaged / Undamaged. The output holds every input feature with all its attributes and geometry, plus the label (ClassLabel, or the name you choose), ClassValue (the class's Value in the model definition) and Confidence (the probability, 0-100). If the input already has a field of one of these names (compared ignoring case), the new field gets the first free suffix _1, _2, ...; the log says so.

Chips are cut from the raster at its own cell size, around each feature transformed to the raster's CRS:
- CropSizeFixed 1 (or absent): a chip of exactly the model's ImageWidth x ImageHeight pixels centred on the centre of the feature's bounding box (the chip's centre is within half a pixel of it; ties go right/down). Pixels are not resampled.
- CropSizeFixed 0: the smallest block of whole pixels around the feature's bounding box, plus 'padding' pixels, widened on its shorter side (with real raster context) to the model's aspect ratio, then resized to ImageWidth x ImageHeight: area averaging when shrinking, bilinear when enlarging.
- BlackenAroundFeature 1: pixels whose centre lies outside the polygon are set to 0. Points and lines have no inside, so their chips are not masked.
Pixels outside the raster and NoData pixels are 0. Features entirely outside the raster, on NoData only, with no geometry or with a geometry that cannot be transformed stay in the output with an empty (NULL) label, and the log says why. Invalid geometries are repaired (make valid) for cutting the chip; the output keeps the original geometry.

Without input features every image is one object: the input raster, or each image in the image folder. Georeferenced images get their extent as a polygon; otherwise the output is a table with the image path.

Model scores: values in [0, 1] whose rows sum to 1 are taken as probabilities, otherwise a softmax is applied (a sigmoid for multi-label models). Multi-label models report every class at or above score_threshold, joined with ';'.

The result is categorized by the class label in the model's colours (a file output gets the style as a .qml beside it) and named after the features, e.g. 'buildings — classified objects'.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>ClassifyPixelsAlgorithm</name>
    <message>
        <location filename="../algorithms/classify_pixels.py" line="48"/>
        <source>Classify Pixels Using Deep Learning</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/classify_pixels.py" line="51"/>
        <source>Runs a trained pixel classification (segmentation) model over a raster and writes a classified raster: one class value per pixel, with the model&apos;s class names and colours (colour table, attribute table and a QGIS style). The raster is read in tiles of the model&apos;s size with &apos;padding&apos; pixels of context on each side; only each tile&apos;s centre is kept, so tiles join without seams. NoData pixels stay NoData.

The model is an Esri model definition (.emd), a deep learning package (.dlpk), a plain ONNX or TorchScript file, or the .emd JSON text. Check a model first with Describe Model.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/classify_pixels.py" line="60"/>
        <source>Input raster</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/classify_pixels.py" line="70"/>
        <source>Classified raster</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/classify_pixels.py" line="72"/>
        <source>Class probabilities</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/classify_pixels.py" line="76"/>
        <source>Output folder (items)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/classify_pixels.py" line="103"/>
        <source>Processing items separately needs an output folder</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>ComputeAccuracyObjectsAlgorithm</name>
    <message>
        <location filename="../algorithms/compute_accuracy_objects.py" line="54"/>
        <source>Compute Accuracy For Object Detection</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_objects.py" line="57"/>
        <source>Scores detected objects against ground truth: detections are visited by descending confidence and each takes the free ground-truth feature of its class with the highest IoU (of the bounding rectangles, as ArcGIS), if that IoU reaches the minimum (default 0.5). A table per class and for all classes: precision, recall, F1, average precision (area under the precision-recall curve), true and false positives, false negatives; the mean average precision in the log and an HTML report with each class&apos;s curve.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_objects.py" line="66"/>
        <source>Detected features</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_objects.py" line="69"/>
        <source>Ground truth features</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_objects.py" line="72"/>
        <source>Detected class value field</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_objects.py" line="76"/>
        <source>Confidence field</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_objects.py" line="81"/>
        <source>Ground truth class value field</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_objects.py" line="86"/>
        <source>Minimum IoU</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_objects.py" line="90"/>
        <source>Mask polygons</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_objects.py" line="92"/>
        <source>Accuracy table</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_objects.py" line="95"/>
        <source>Accuracy report</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_objects.py" line="98"/>
        <source>Mean average precision</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>ComputeAccuracyPixelsAlgorithm</name>
    <message>
        <location filename="../algorithms/compute_accuracy_pixels.py" line="69"/>
        <source>Compute Accuracy For Pixel Classification</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_pixels.py" line="72"/>
        <source>Compares a classified raster with reference data (a classified raster, or polygons/points with a class field) on the classified raster&apos;s grid (reference rasters read with nearest neighbour; NoData left out): a confusion matrix table in ArcGIS&apos;s layout, per-class precision, recall, F1 and IoU, overall accuracy, mean IoU and Cohen&apos;s kappa, and an HTML report with the matrix as a heat map. All pixels, or random / stratified random points.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_pixels.py" line="80"/>
        <source>Classified raster</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_pixels.py" line="82"/>
        <source>Reference data</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_pixels.py" line="86"/>
        <source>Reference class field</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_pixels.py" line="90"/>
        <source>Class mapping</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_pixels.py" line="94"/>
        <source>Sampling</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_pixels.py" line="98"/>
        <source>Number of random points</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_pixels.py" line="101"/>
        <source>Random seed</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_pixels.py" line="104"/>
        <source>Confusion matrix</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_pixels.py" line="108"/>
        <source>Per-class accuracy</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/compute_accuracy_pixels.py" line="111"/>
        <source>Accuracy report</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>DLToolsAlgorithm</name>
    <message>
        <location filename="../algorithms/base.py" line="129"/>
        <source>Model definition</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="136"/>
        <source>Model arguments</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="186"/>
        <source>No model given: choose an .emd, .dlpk, .onnx or .pt file</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>DeepLearningToolsPlugin</name>
    <message>
        <location filename="../plugin.py" line="93"/>
        <source>ONNX Runtime is not installed: the tools cannot run models yet.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../plugin.py" line="97"/>
        <source>Install…</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>DescribeModelAlgorithm</name>
    <message>
        <location filename="../algorithms/describe_model.py" line="30"/>
        <source>Describe Model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/describe_model.py" line="33"/>
        <source>Reports what Deep Learning Tools reads from a model: its type, framework and origin, the model file and the backend and device that would run it, the inputs and outputs with their shapes, the tile size, the bands it reads, the input normalisation, the classes with their colours, the model arguments each tool accepts with their defaults, and any warnings. Nothing is run on imagery. The report is written to the log, to an HTML page and to a JSON file.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/describe_model.py" line="46"/>
        <source>Model description (HTML)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/describe_model.py" line="51"/>
        <source>Model description (JSON)</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>DetectChangeAlgorithm</name>
    <message>
        <location filename="../algorithms/detect_change.py" line="40"/>
        <source>Detect Change Using Deep Learning</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/detect_change.py" line="43"/>
        <source>Compares an earlier and a later image with a trained change detection model and writes a classified change raster: 0 where nothing changed, otherwise the model&apos;s class values, styled with its class names and colours. Both images are read on the earlier image&apos;s grid (the later one is resampled or reprojected on the fly if needed) and only where they overlap. The model receives the earlier image&apos;s bands followed by the later image&apos;s (ExtractBands indexes that stack), or one image per input for two-input models.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/detect_change.py" line="51"/>
        <source>From raster (earlier)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/detect_change.py" line="53"/>
        <source>To raster (later)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/detect_change.py" line="61"/>
        <source>Change raster</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>DetectObjectsAlgorithm</name>
    <message>
        <location filename="../algorithms/detect_objects.py" line="60"/>
        <source>Detect Objects Using Deep Learning</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/detect_objects.py" line="63"/>
        <source>Runs a trained object detector (YOLO, Mask R-CNN, Faster R-CNN, RetinaNet, SSD, ...) over a raster and writes one polygon per object, in the raster&apos;s CRS, with its class name (Class), class value (ClassValue) and confidence (0-100). The raster is read in tiles with &apos;padding&apos; pixels of context; objects are kept by the tile whose centre holds them, and the pieces of objects cut by tile seams are merged, so each object comes out once. Instance masks give the object&apos;s outline at pixel precision. Optionally Non Maximum Suppression then removes overlapping objects. The layer is styled by class with the model&apos;s colours.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/detect_objects.py" line="73"/>
        <source>Input raster</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/detect_objects.py" line="76"/>
        <source>Non maximum suppression</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/detect_objects.py" line="80"/>
        <source>Confidence score field</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/detect_objects.py" line="83"/>
        <source>Class value field</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/detect_objects.py" line="87"/>
        <source>Max overlap ratio</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/detect_objects.py" line="97"/>
        <source>Detected objects</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>ExportTrainingDataAlgorithm</name>
    <message>
        <location filename="../algorithms/export_training_data.py" line="60"/>
        <source>Export Training Data For Deep Learning</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="63"/>
        <source>Cuts a raster into image chips with labels from polygons, points (with a buffer) or a classified raster, in ArcGIS&apos;s layouts (Classified_Tiles, PASCAL_VOC_rectangles, KITTI_rectangles, RCNN_Masks, Labeled_Tiles) or for other frameworks (YOLO with data.yaml, COCO labels.json). Chips keep the raster&apos;s raw values. The folder holds images/, labels/, map.txt, stats.txt, esri_model_definition.emd and esri_accumulated_stats.json as ArcGIS writes them, so arcgis.learn and the training tool read it. The output folder must be new or empty; it appears only when the export has finished.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="72"/>
        <source>Input raster</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="74"/>
        <source>Output folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="76"/>
        <source>Input feature class or classified raster</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="81"/>
        <source>Class value field</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="85"/>
        <source>Metadata format</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="88"/>
        <source>Image format</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="92"/>
        <source>Mask polygons</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="95"/>
        <source>Reference system</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="99"/>
        <source>Crop mode (Labeled_Tiles)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="103"/>
        <source>Blacken around feature (Labeled_Tiles)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="106"/>
        <source>Bands</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="112"/>
        <source>Chips written</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="123"/>
        <source>Output no feature tiles</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="126"/>
        <source>Rotation angle</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="131"/>
        <source>Buffer radius</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="134"/>
        <source>Minimum polygon overlap ratio</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/export_training_data.py" line="139"/>
        <source>Start index</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>ExtractPackageAlgorithm</name>
    <message>
        <location filename="../algorithms/extract_package.py" line="44"/>
        <source>Extract Deep Learning Package</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/extract_package.py" line="47"/>
        <source>dlpk,package,unzip,extract,emd,model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/extract_package.py" line="50"/>
        <source>Unpacks a deep learning package (.dlpk) into a folder and reports its model definition (.emd): framework, model type, description and tags. Packages are untrusted input: a package with absolute paths, paths leaving the folder (../), symbolic links or a suspicious compression ratio (zip bomb) is refused and nothing is written. The folder must be new or empty; the files appear in it only once all are extracted.

The inference tools read .dlpk files directly, so extracting is only needed to inspect or edit a package.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/extract_package.py" line="58"/>
        <source>Deep learning package</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/extract_package.py" line="62"/>
        <source>Output folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/extract_package.py" line="65"/>
        <source>Model definition (.emd)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/extract_package.py" line="66"/>
        <source>Model file</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/extract_package.py" line="67"/>
        <source>Framework</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/extract_package.py" line="68"/>
        <source>Model type</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/extract_package.py" line="69"/>
        <source>Description</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/extract_package.py" line="70"/>
        <source>Summary</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/extract_package.py" line="71"/>
        <source>Tags</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/extract_package.py" line="77"/>
        <source>No deep learning package given</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/extract_package.py" line="79"/>
        <source>No output folder given</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>InstallLibrariesAlgorithm</name>
    <message>
        <location filename="../algorithms/install_libraries.py" line="43"/>
        <source>Install Inference Libraries</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/install_libraries.py" line="46"/>
        <source>Installs the libraries the tools run models with into a folder of the plugin&apos;s own, for QGIS&apos;s Python (no terminal, no administrator rights): ONNX Runtime for the CPU (needed for .emd/.onnx models), ONNX Runtime for NVIDIA GPUs, PyTorch + torchvision (TorchScript and arcgis.learn models: a large download) or Dask (clusters). QGIS&apos;s own packages, numpy above all, are never changed. Upgrade brings the newest versions; Remove deletes everything the plugin installed. A failed or cancelled install leaves the previous state working. Offline: give a folder of wheel files (pip download on another machine).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/install_libraries.py" line="55"/>
        <source>Action</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/install_libraries.py" line="59"/>
        <source>Library</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/install_libraries.py" line="64"/>
        <source>Package index URL</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/install_libraries.py" line="69"/>
        <source>Folder of wheel files (offline)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/install_libraries.py" line="73"/>
        <source>Library folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/install_libraries.py" line="74"/>
        <source>Installed versions</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>ModelToEcdAlgorithm</name>
    <message>
        <location filename="../algorithms/model_to_ecd.py" line="30"/>
        <source>Deep Learning Model To Ecd</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/model_to_ecd.py" line="33"/>
        <source>ecd,classifier definition,class info,esri,arcgis,legacy</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/model_to_ecd.py" line="36"/>
        <source>Writes an Esri classifier definition (.ecd) that pairs a trained model file with an &quot;Esri Extra Info&quot; class info JSON: the framework (Classifier), the number of raster bands, the batch size and the classes with their values, names and colours.

This re-creates ArcGIS&apos;s Deep Learning Model To Ecd, which ArcGIS has deprecated (replaced by Export Training Data For Deep Learning and .emd model definitions). Use it for old workflows that start from a model file and a class info JSON; for new work write an .emd.

The .ecd written here works as the model in this plugin&apos;s inference tools (Classify Pixels ...). Since Esri never published its deep learning .ecd layout, the file is plugin-defined: it stores the tile size, model type and bands with .emd key names. The tile size is read from an ONNX model; for other files (or models that take any tile size) add &quot;ImageHeight&quot; and &quot;ImageWidth&quot; to the class info. Optional class info keys &quot;ModelType&quot;, &quot;DataRange&quot; and &quot;ModelPadding&quot; are copied too.

Class info example: {&quot;ImportDeepLearningModelToEsriExtraInfo&quot;: 0, &quot;Version&quot;: 1, &quot;Classifier&quot;: &quot;ONNX&quot;, &quot;NumberRasterBands&quot;: 4, &quot;MiniBatchSize&quot;: 16, &quot;Classes&quot;: [{&quot;Value&quot;: 100, &quot;Name&quot;: &quot;Impervious&quot;, &quot;Color&quot;: [204, 204, 204]}]}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/model_to_ecd.py" line="53"/>
        <source>Input deep learning model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/model_to_ecd.py" line="58"/>
        <source>Input classification info (JSON)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/model_to_ecd.py" line="64"/>
        <source>Output classifier definition</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/model_to_ecd.py" line="74"/>
        <source>No model file given</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/model_to_ecd.py" line="76"/>
        <source>No class info JSON given</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/model_to_ecd.py" line="78"/>
        <source>No output .ecd file given</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>NonMaximumSuppressionAlgorithm</name>
    <message>
        <location filename="../algorithms/non_maximum_suppression.py" line="68"/>
        <source>Non Maximum Suppression</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/non_maximum_suppression.py" line="81"/>
        <source>Input features</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/non_maximum_suppression.py" line="84"/>
        <source>Confidence score field</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/non_maximum_suppression.py" line="89"/>
        <source>Class value field</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/non_maximum_suppression.py" line="92"/>
        <source>Max overlap ratio</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/non_maximum_suppression.py" line="97"/>
        <source>Output features</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/non_maximum_suppression.py" line="71"/>
        <source>Removes duplicate detections: of two polygons whose intersection over union is more than the maximum overlap ratio, the one with the lower confidence is removed. With a class field, each class is reviewed on its own first, then all remaining features are reviewed together across classes (as ArcGIS&apos;s Non Maximum Suppression). Without one, a &apos;Classvalue&apos; or &apos;Value&apos; field is used if the layer has one, else all features are one class. Attributes are kept. A spatial index keeps tens of thousands of features to seconds. The result carries the input layer&apos;s style (or is categorized by the class field) and is named after the input.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>PackageModelAlgorithm</name>
    <message>
        <location filename="../algorithms/package_model.py" line="69"/>
        <source>Create Deep Learning Package</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/package_model.py" line="72"/>
        <source>dlpk,package,emd,zip,share,model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/package_model.py" line="110"/>
        <source>Extra files</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/package_model.py" line="117"/>
        <source>Description</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/package_model.py" line="120"/>
        <source>Summary</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/package_model.py" line="123"/>
        <source>Tags</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/package_model.py" line="126"/>
        <source>Output deep learning package</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/package_model.py" line="145"/>
        <source>Give either a model definition, or a model file with its class info JSON, not both: the model definition already names its model file</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/package_model.py" line="187"/>
        <source>No output .dlpk file given</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/package_model.py" line="75"/>
        <source>Choose the model: its model definition (.emd, or an .ecd from Deep Learning Model To Ecd), or a bare model file (.onnx, .pt, ...) together with its class info JSON, from which the .emd is built the way Deep Learning Model To Ecd does it.

Writes a deep learning package (.dlpk): a zip archive with the Esri model definition (.emd) at its root, the model file and every other file the .emd refers to (InferenceFunction .py, ModelConfigurationFile, TorchScript files), plus any extra files. Paths inside the packaged .emd are made relative, so the package works wherever it is extracted, in this plugin and in ArcGIS Pro. The tool refuses a definition whose referenced files are missing, so a package is never incomplete. The description, summary and tags are stored in the .emd under &quot;QGISPlugin&quot; (ArcGIS ignores that key) and shown by Extract Deep Learning Package.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/package_model.py" line="91"/>
        <source>Model: its definition (.emd, .ecd) or a model file (.onnx, .pt, …)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/package_model.py" line="98"/>
        <source>Class info JSON (only with a model file)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/package_model.py" line="104"/>
        <source>Model file (scripts: instead of the model)</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>RunParameters</name>
    <message>
        <location filename="../algorithms/run_parameters.py" line="47"/>
        <source>Processor type</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/run_parameters.py" line="51"/>
        <source>GPU ID</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/run_parameters.py" line="66"/>
        <source>Processing extent</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/run_parameters.py" line="68"/>
        <source>Processing mask (polygons)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/run_parameters.py" line="74"/>
        <source>Cell size</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/run_parameters.py" line="84"/>
        <source>Processing mode</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/run_parameters.py" line="114"/>
        <source>Dask scheduler</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/run_parameters.py" line="124"/>
        <source>Retries on failures</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/run_parameters.py" line="138"/>
        <source>Allow the model&apos;s own code (Python or TorchScript)</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>TrainModelAlgorithm</name>
    <message>
        <location filename="../algorithms/train_model.py" line="54"/>
        <source>Train Deep Learning Model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="57"/>
        <source>train,training,arcgis.learn,unet,emd,dlpk,model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="75"/>
        <source>Input training data (folder)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="81"/>
        <source>Output model (folder)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="85"/>
        <source>Model type</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="90"/>
        <source>Backbone model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="94"/>
        <source>Max epochs</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="98"/>
        <source>Batch size</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="102"/>
        <source>Learning rate</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="107"/>
        <source>Validation %</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="112"/>
        <source>Stop when model stops improving</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="116"/>
        <source>Freeze model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="119"/>
        <source>Data augmentation</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="122"/>
        <source>Pre-trained model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="127"/>
        <source>Pre-trained backbone weights</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="132"/>
        <source>Download ImageNet backbone weights</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="137"/>
        <source>Model arguments</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="148"/>
        <source>Model definition (.emd)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="149"/>
        <source>Deep learning package (.dlpk)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/train_model.py" line="60"/>
        <source>Trains an arcgis.learn model (UnetClassifier or DeepLab on Classified_Tiles chips, FeatureClassifier on Labeled_Tiles chips, FasterRCNN, SingleShotDetector or RetinaNet on PASCAL_VOC_rectangles chips, MaskRCNN on RCNN_Masks chips) on a training-data folder written by Export Training Data For Deep Learning (this plugin&apos;s or ArcGIS&apos;s), and writes the folder arcgis.learn writes: &lt;name&gt;.pth with arcgis.learn&apos;s own weight names, &lt;name&gt;.emd, model_metrics.html, ModelCharacteristics/loss_graph.png and show_results.png, training_validation_loss.json and &lt;name&gt;.dlpk. Classify Pixels / Classify Objects run it, and so does ArcGIS Pro (the detectors: Detect Objects).

After each epoch the log shows the training and validation loss and the validation metrics (detectors: average precision per class and mAP at IoU 0.5), and a checkpoint is written to OUTPUT_FOLDER/checkpoints: running again with the same settings and folder resumes from it. The model kept is the epoch with the lowest validation loss; a cancelled training still writes it from the best finished epoch.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>alg</name>
    <message>
        <location filename="../algorithms/object_inputs.py" line="49"/>
        <source>The input raster &apos;{parameters.get(alg.INPUT)}&apos; cannot be loaded</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/object_inputs.py" line="50"/>
        <source>No imagery: give an input raster or an image folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/object_inputs.py" line="76"/>
        <source>An online layer needs input features: the chips are cut around them (the layer itself has no edge to take as one image)</source>
        <translation type="unfinished"></translation>
    </message>
</context>
</TS>
