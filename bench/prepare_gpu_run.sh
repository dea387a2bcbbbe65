#!/usr/bin/env bash
# Run HERE (the CPU machine) before a GPU session's device run: puts what the device machine lacks into
# git-ignored folders of the repo that the device tool can carry:
#   .whl/            pydicom (imported by anatpaste.io; the device image has torch, scikit-image, sklearn, tqdm)
#   .data/zhanglab/  the ZhangLab data set (16 MB; ../shared does not travel with the working tree)
set -euo pipefail
cd "$(dirname "$0")/.."
for d in /.whl/ /.data/; do grep -qxF "$d" .git/info/exclude || echo "$d" >> .git/info/exclude; done
mkdir -p .whl .data
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform any -d .whl pydicom==2.4.5
rm -rf .data/zhanglab && cp -r ../shared/data/zhanglab .data/zhanglab
du -sh .whl .data
