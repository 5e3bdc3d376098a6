<?php
/*
 * MikoPBX's /etc/inc/Globals.php boots its DI for every PHP it runs (the
 * module's bin/featpkg-reload.php requires it). Here, on the include_path of
 * the reload command the harness gives featpkg, it boots the harness instead.
 */
require_once __DIR__ . '/harness.php';
FeatpkgHarness\boot();
