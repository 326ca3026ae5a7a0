set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES=
lscpu | grep -i "model name"; nproc
python3 -c "import torch, speechbrain, onnxruntime; print(torch.__version__, speechbrain.__version__, onnxruntime.__version__)"
timeout 540 python3 -m speechbrain_wsm.bench.streaming --device cpu --parts lookahead stream --variants maa sa llsa wsm --chunks 1 8 32 --stream-seconds 10 --onnx --onnx-chunks 8 --no-plot --out $OUT 2>&1 | grep -v "^\[torch.onnx\]\|Warning\|warn" | tee $OUT/log.txt
