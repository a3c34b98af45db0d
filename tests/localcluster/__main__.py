"""The local cluster by hand (as root, with Go):

    python -m tests.localcluster up        # build once (cached), start; prints KUBECONFIG
    python -m tests.localcluster status
    python -m tests.localcluster load kuberl:dev      # a Docker image into the cluster
    python -m tests.localcluster build [skaffold]     # only the binaries
    python -m tests.localcluster down

skaffold's `localcluster` profile builds with `python -m tests.localcluster skaffold-build DIR`:
the Dockerfile in DIR on the locally made base image, tagged $IMAGE, imported into the cluster.
"""

from __future__ import annotations

import argparse
import os
import sys

from tests.localcluster import build, cluster, images, lifecycle
from tests.localcluster.cluster import ClusterError, Layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.localcluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start a fresh cluster (building what is not cached)")
    commands.add_parser("down", help="stop the cluster and remove its state (images and builds stay)")
    commands.add_parser("status", help="say whether the cluster answers")
    load = commands.add_parser("load", help="import Docker images into the cluster's containerd")
    load.add_argument("images", nargs="+")
    custom = commands.add_parser("skaffold-build", help="skaffold's custom build: $IMAGE from DIR/Dockerfile")
    custom.add_argument("directory")
    make = commands.add_parser("build", help="build the binaries only")
    make.add_argument("extra", nargs="*", choices=["skaffold"], help="also build these tools")
    args = parser.parse_args(argv)
    layout = Layout.default()
    try:
        if args.command == "up":
            lifecycle.up(layout)
            print(f"export KUBECONFIG={layout.kubeconfig}")
        elif args.command == "down":
            cluster.down(layout)
        elif args.command == "status":
            running = cluster.is_up(layout)
            print(f"{'up' if running else 'down'}: KUBECONFIG={layout.kubeconfig}")
            return 0 if running else 1
        elif args.command == "load":
            for tag in args.images:
                print(f"{tag}: {'imported' if images.import_image(layout, tag) else 'already there'}")
        elif args.command == "skaffold-build":
            from tests.docker import engine

            tag = os.environ["IMAGE"]  # set by skaffold: repository:tag it chose
            engine.ensure_engine()
            engine.build(tag, args.directory, engine.ensure_base_image())
            # Without a registry skaffold deploys `repository:<image id>` (what it loads into kind):
            # the cluster needs the image under that name too.
            image_id = engine.docker("image", "inspect", tag, "--format", "{{.Id}}").stdout.decode().strip()
            by_id = f"{tag.rsplit(':', 1)[0]}:{image_id.removeprefix('sha256:')}"
            engine.docker("tag", tag, by_id)
            for name in (tag, by_id):
                images.import_image(layout, name)
            print(f"{tag} ({by_id}): built and imported")
        elif args.command == "build":
            extra = [build.SKAFFOLD] if "skaffold" in args.extra else []
            for component in (*build.CLUSTER_COMPONENTS, *extra):
                print(build.build(component))
    except (ClusterError, build.BuildError) as err:
        print(f"localcluster: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
