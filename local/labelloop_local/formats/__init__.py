"""Standard dataset formats: Ground Truth object-detection lines to and from COCO, YOLO and Pascal VOC.

Pure and streaming (no boto3, no AWS): `groundtruth` reads manifest lines into `LabeledImage`s
(validated by `labelloop_core.manifest.check_line`, the merge's validator) and builds lines back
(`manifest.build_line`, then validated again); `coco`, `yolo` and `voc` write and read each format.
Where the files come from and go to (local files, S3, the atomic output directory, image copies) is
the CLI's business (`labelloop_local.cli.formats`).

Coordinate conventions, all from the same integer Ground Truth box (left, top, width, height; pixels,
origin at the top-left corner of the top-left pixel):
- COCO `bbox` = [left, top, width, height] (pixels);
- YOLO `class cx cy w h` = centre and size divided by the image size, rounded to `yolo.DIGITS`
  decimals (the round trip is exact for image sides below `yolo.exact_side_limit()` pixels);
- Pascal VOC `bndbox` = 1-based inclusive pixel indices, as the VOC devkit counts them:
  xmin = left + 1, xmax = left + width (`--voc-origin 0` for tools that write 0-based corners).
"""
