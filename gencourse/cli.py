"""``gencourse`` on the command line: build the student edition, execute lessons, benchmark them."""
import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gencourse", description="Tools of the generative-models course.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("student", help="write the student edition (exercises unsolved)", add_help=False)
    sub.add_parser("build", help="execute lesson sources into notebooks", add_help=False)
    sub.add_parser("bench", help="time every lesson and print its headline figures", add_help=False)
    sub.add_parser("recipes", help="train the digits recipes and write the checkpoints lesson 11 loads", add_help=False)
    sub.add_parser("env", help="print versions and the device the course will use")
    args, rest = parser.parse_known_args(argv)
    if args.command == "student":
        from gencourse.student import main as run
    elif args.command == "build":
        from gencourse.authoring import main as run
    elif args.command == "bench":
        from gencourse.bench import main as run
    elif args.command == "recipes":
        from gencourse.recipes import main as run
    else:
        import gencourse
        from gencourse.bench import machine

        print(f"gencourse {gencourse.__version__} on {machine()}; device: {gencourse.get_device()}")
        return 0
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
