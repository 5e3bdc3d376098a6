<?php
if (!defined('FREEPBX_IS_AUTH')) { die('No direct script access allowed'); }
/*
 * FreePBX page of the featpkg module (config.php?display=featpkg, menu item
 * from module.xml's <menuitems>): prints the settings page's HTML fragment
 * with data-pbx="freepbx". FreePBX includes assets/js/*.js and
 * assets/css/*.css itself; the page's script calls
 * ajax.php?module=featpkg&command=<action> (Featpkg::ajaxHandler).
 */

$featpkgPage = @file_get_contents(__DIR__ . '/ui-assets/settings.html');
if ($featpkgPage === false) {
    echo '<div class="alert alert-danger">featpkg: ui-assets/settings.html is missing: upload the module archive again.</div>';
} else {
    $featpkgAt = strpos($featpkgPage, 'data-pbx=""');
    echo $featpkgAt === false
        ? $featpkgPage
        : substr_replace($featpkgPage, 'data-pbx="freepbx"', $featpkgAt, strlen('data-pbx=""'));
}
