"""The edge side: what runs on the Raspberry Pi.

numpy, OpenCV and a LiteRT interpreter only; nothing here imports TensorFlow
(a test imports every module with TensorFlow made unimportable). The one
preprocessing definition is edge_signs.preprocess, below both worlds.

    runtime     the TFLite interpreter wrapper: load, check, feed, read probabilities
    evaluate    accuracy, loss, agreement and latency of .tflite files
    sources     frame sources: USB camera, Pi Camera Module, video, the test set
    truth       ground truth for videos (labels CSV)
    display     overlay, window, recorder, snapshots
    live        the camera loop: options, smoothing, timing, summary
    serve       --serve: the browser page, MJPEG stream and status JSON beside the loop
    doctor      `edge-signs doctor`: is this machine ready (runtime, picamera2, window, cameras, SIGNS, model, CPU)
"""
