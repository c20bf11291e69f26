#!/usr/bin/env python3
"""How many bytes Helm stores for a release of a packaged chart, and a limit on it.

Helm 3 keeps every release in a Secret (the default storage driver): the
release (chart metadata, every template and every other file of the chart,
values, the rendered manifest) as JSON, gzipped, base64-encoded, under one
key. Kubernetes refuses a Secret whose data exceed 1 MiB, so a chart that
packages big files fails at `helm install` with
`data: Too long: must have at most 1048576 bytes`, which `helm template` and
`helm lint` never show. This script rebuilds that encoding from the package
(`helm package`) and the rendered manifest (`helm template`) the way Helm's
`pkg/storage/driver/util.go` encodes it, prints the figures and the biggest
files, and fails above the limit.

  helm package helm/otus -d /tmp/pkg
  helm template otus helm/otus >/tmp/manifest.yaml
  python3 helm/release_size.py /tmp/pkg/otus-0.1.0.tgz /tmp/manifest.yaml --max-kib 256
"""
import argparse
import base64
import gzip
import json
import sys
import tarfile

KUBERNETES_SECRET_LIMIT = 1 << 20


def release_json(package, manifest):
    templates, files, metadata, values = [], [], {}, ""
    with tarfile.open(package) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            # "otus/templates/x.yaml" -> "templates/x.yaml"
            name = member.name.split("/", 1)[1]
            data = tar.extractfile(member).read()
            if name == "Chart.yaml":
                metadata = {"raw": data.decode()}
            elif name == "values.yaml":
                values = data.decode()
            elif name.startswith("templates/"):
                templates.append((name, data))
            else:
                files.append((name, data))

    def encoded(entries):
        return [{"name": n, "data": base64.b64encode(d).decode()} for n, d in entries]

    release = {
        "name": "otus",
        "info": {"status": "deployed", "description": "Install complete"},
        "chart": {
            "metadata": metadata,
            "templates": encoded(templates),
            "values": values,
            "files": encoded(files),
        },
        "config": {},
        "manifest": manifest,
        "version": 1,
        "namespace": "otus",
    }
    return json.dumps(release).encode(), templates + files


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("package", help="the chart package (.tgz) from helm package")
    p.add_argument("manifest", help="the rendered release (helm template output)")
    p.add_argument("--max-kib", type=int, default=256, help="fail above this many KiB stored (default 256)")
    args = p.parse_args()
    with open(args.manifest) as f:
        manifest = f.read()
    raw, entries = release_json(args.package, manifest)
    # Helm: gzip.NewWriterLevel(BestCompression), then base64.StdEncoding.
    stored = base64.b64encode(gzip.compress(raw, compresslevel=9))
    size = len(stored)
    print(f"chart package: {len(entries)} files; release JSON {len(raw) / 1024:.0f} KiB; "
          f"stored in its Secret: {size / 1024:.1f} KiB "
          f"(Kubernetes' limit {KUBERNETES_SECRET_LIMIT // 1024} KiB, this check's {args.max_kib} KiB)")
    for name, data in sorted(entries, key=lambda e: -len(e[1]))[:5]:
        print(f"  {len(data) / 1024:8.1f} KiB  {name}")
    if size > args.max_kib * 1024:
        print(f"FAIL: the release would store {size / 1024:.0f} KiB; "
              "keep big files out of the chart (.helmignore, or link only the files templates read)",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
