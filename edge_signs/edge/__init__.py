"""The edge side: what runs on the Raspberry Pi.

numpy, OpenCV and a LiteRT interpreter only; nothing here imports TensorFlow or
edge_signs.trainer (tests/shared/test_layout.py reads every import; a test imports
every module with TensorFlow made unimportable). The one preprocessing definition
is edge_signs.preprocess, below both worlds.

Frames in:
    sources       open_source(): the one factory, and the options it reads
    frame_source  what every source is (FrameSource), what a loop may ask of it
    devices       USB camera, Pi Camera Module, video file, the SIGNS test set
    capture       sources read in a thread: the newest camera frame, a video decoded ahead
    truth         ground truth for videos (a labels CSV)
The loop:
    loop          FrameLoop: source -> optional stage -> outputs; stop signals, timing
    predict       the classifier stage: prediction, smoothing, the run's score
    results       a frame's result and the run's summary
    live          `live`: the loop with a classifier and its outputs
    collect       `collect`: the loop with a crop saver (collect_keys, crop_writer)
    teach_live    teaching as a loop output (teach_window: keys 0-5; teach_serve: --serve buttons)
Outputs (loop.FrameOutput):
    loop_outputs  the window, the browser, events, a caller's callback
    display       overlay, window, recorder, snapshots
    outputs       --json lines and --record video, each failing alone
    serve         --serve (serve_access, serve_http, serve_handlers, serve_frames, serve_page)
    events        --hold: a held sign becomes an event (event_types, event_outputs, mqtt)
Models:
    runtime       the TFLite interpreter wrapper: load, check, feed, read probabilities
    evaluate      the .tflite runner and the evaluate table (eval_sets: what is scored)
    head, head_file, tflite_file, model_files, teach   a personal head in a copy of the int8 file
    cpu, doctor   what this CPU does fast; `edge-signs doctor`
    ranges        the number options' allowed values, said once
"""
