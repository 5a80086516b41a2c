"""musicnn teacher worker: runs *inside the Python 3.7 musicnn venv*, started by training/teacher.py.

    VENV/bin/python training/musicnn_worker.py JOBS.jsonl CACHE_DIR [--batch 64]

Each line of JOBS.jsonl is ``{"sha256": ..., "path": ...}``.  For every clip it writes
``CACHE_DIR/<sha[:2]>/<sha>.npz`` (atomically) with, per non-overlapping 3-s patch, for both
``MTT_musicnn`` and ``MSD_musicnn``: ``<model>/tags`` (sigmoid tag probabilities, [P, 50]),
``<model>/penultimate`` ([P, 200]), ``<model>/mean_pool`` and ``<model>/max_pool`` ([P, 753]).
Each model's graph and session are built once and reused for every clip (musicnn's own
``extractor`` rebuilds the graph on every call).  The log-mel input is musicnn's own
``extractor.batch_data`` (librosa, 16 kHz, float16 mel, log10(10000 x + 1)), so the numbers are
what musicnn gives.  Prints one JSON line of timings at the end.

Kept to Python 3.7 syntax and to numpy/tensorflow/musicnn: it never imports mirzoo.
"""

import json
import os
import sys
import tempfile
import time

import numpy as np

MODELS = ("MTT_musicnn", "MSD_musicnn")
INPUT_SECONDS = 3.0
OUTPUTS = ("tags", "penultimate", "mean_pool", "max_pool")


def build_graphs():
    import librosa
    import tensorflow as tf
    from musicnn import configuration as config
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    n_frames = librosa.time_to_frames(INPUT_SECONDS, sr=config.SR, n_fft=config.FFT_SIZE, hop_length=config.FFT_HOP) + 1
    package = os.path.dirname(models.__file__)
    nets = {}
    for name in MODELS:
        labels = config.MTT_LABELS if name.startswith("MTT") else config.MSD_LABELS
        graph = tf.Graph()
        with graph.as_default():
            with tf.name_scope("model"):
                x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, config.N_MELS])
                is_training = tf.compat.v1.placeholder(tf.bool)
                out = models.define_model(x, is_training, name, len(labels))
                logits, mean_pool, max_pool, penultimate = out[0], out[6], out[7], out[8]
                probs = tf.nn.sigmoid(logits)
            sess = tf.compat.v1.Session(graph=graph, config=tf.compat.v1.ConfigProto(
                intra_op_parallelism_threads=int(os.environ.get("MUSICNN_THREADS", "0")),
                inter_op_parallelism_threads=1))
            tf.compat.v1.train.Saver().restore(sess, os.path.join(package, name) + "/")
        nets[name] = (sess, x, is_training, [probs, penultimate, mean_pool, max_pool], list(labels))
    return nets, n_frames


def patches(path, n_frames):
    from musicnn.extractor import batch_data

    batch, _ = batch_data(path, n_frames, n_frames)
    return np.asarray(batch, dtype=np.float32)


def save_atomic(target, arrays):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv):
    jobs_file, cache = argv[0], argv[1]
    batch = int(argv[argv.index("--batch") + 1]) if "--batch" in argv else 64
    jobs = [json.loads(l) for l in open(jobs_file, encoding="utf-8") if l.strip()]
    t0 = time.time()
    nets, n_frames = build_graphs()
    t_graph = time.time() - t0
    t_mel = t_net = 0.0
    done, failed, seconds = 0, [], 0.0
    for start in range(0, len(jobs), 16):  # a chunk of clips -> one set of forward passes
        chunk, mels = [], []
        t = time.time()
        for job in jobs[start:start + 16]:
            try:
                p = patches(job["path"], n_frames)
            except Exception as e:  # too short, unreadable: reported, not fatal
                failed.append({"path": job["path"], "error": "%s: %s" % (type(e).__name__, e)})
                continue
            chunk.append(job)
            mels.append(p)
        t_mel += time.time() - t
        if not chunk:
            continue
        allp = np.concatenate(mels)
        t = time.time()
        results = {}
        for name, (sess, x, is_training, fetch, _) in nets.items():
            parts = [sess.run(fetch, feed_dict={x: allp[i:i + batch], is_training: False})
                     for i in range(0, len(allp), batch)]
            for k, key in enumerate(OUTPUTS):
                results[name + "/" + key] = np.concatenate([np.reshape(p[k], (len(p[k]), -1)) for p in parts])
        t_net += time.time() - t
        offset = 0
        for job, m in zip(chunk, mels):
            arrays = {k: v[offset:offset + len(m)].astype(np.float32) for k, v in results.items()}
            offset += len(m)
            h = job["sha256"]
            save_atomic(os.path.join(cache, h[:2], h + ".npz"), arrays)
            done += 1
            seconds += len(m) * INPUT_SECONDS
        sys.stderr.write("musicnn worker: %d/%d clips\n" % (done + len(failed), len(jobs)))
        sys.stderr.flush()
    labels = {name: net[4] for name, net in nets.items()}
    print(json.dumps({"done": done, "failed": failed, "graph_seconds": t_graph, "mel_seconds": t_mel,
                      "net_seconds": t_net, "audio_seconds": seconds, "labels": labels}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
