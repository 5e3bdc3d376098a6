<?php
/*
 * FreePBX destination hooks of the featpkg module: the installed features'
 * destinations (e.g. operator-alert's no-answer context) appear in FreePBX's
 * destination drop-downs and are not reported as unknown (FreePBX/framework
 * BMO/Destinations.class.php reads <rawname>_destinations() and
 * <rawname>_getdestinfo()). The list comes from
 * `featpkg destinations --target freepbx`, asked once per request.
 */

if (!defined('FREEPBX_IS_AUTH')) {
    die('No direct script access allowed');
}

require_once __DIR__ . '/Lib/FeatpkgRunner.php';

/**
 * The installed features' destinations, from featpkg; null (and an error in
 * FreePBX's log) when featpkg fails.
 *
 * @return array<int, array{destination: string, description: string, feature: string}>|null
 */
function featpkg_destination_list()
{
    static $asked = false;
    static $list = null;
    if (!$asked) {
        $asked = true;
        try {
            $list = (new \Modules\ModuleFeatpkg\Lib\FeatpkgRunner(__DIR__))->freepbxDestinations();
        } catch (\Throwable $e) {
            $list = null;
            $message = 'featpkg: cannot list the feature destinations: ' . $e->getMessage();
            if (function_exists('freepbx_log') && defined('FPBX_LOG_ERROR')) {
                freepbx_log(FPBX_LOG_ERROR, $message);
            } else {
                error_log($message);
            }
        }
    }
    return $list;
}

/** Destinations for FreePBX's drop-downs, or null when there are none. */
function featpkg_destinations()
{
    $list = featpkg_destination_list();
    if (empty($list)) {
        return null;
    }
    $out = [];
    foreach ($list as $item) {
        $out[] = [
            'destination' => $item['destination'],
            'description' => $item['description'],
            'category' => 'Feature packages',
            'id' => 'featpkg',
        ];
    }
    return $out;
}

/** Claims one of our destinations (description, no edit page), false for others. */
function featpkg_getdestinfo($dest)
{
    foreach (featpkg_destination_list() ?? [] as $item) {
        if ($item['destination'] === $dest) {
            return [
                'description' => $item['feature'] === ''
                    ? 'featpkg: ' . $item['description']
                    : 'featpkg ' . $item['feature'] . ': ' . $item['description'],
                'edit_url' => false,
            ];
        }
    }
    return false;
}
