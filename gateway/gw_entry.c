/*
 * gateway/gw_entry.c: the entry point of the `sluice` binary; everything else lives in
 * the gw library so that tests and fuzz targets link the same code.
 */
#include "gw.h"

int
main(int argc, char **argv)
{
    return gw_main(argc, argv);
}
