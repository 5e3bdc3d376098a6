<?php
/*
 * FreePBX BMO class of the featpkg module (rawname featpkg). The module
 * directory is the extracted bundle; install() hands it to the bundled featpkg
 * (FreePBX/framework BMO.interface.php: an exception thrown from install()
 * leaves the module not installed, one from uninstall() is shown as a warning).
 * featpkg runs `fwconsole reload` itself.
 *
 * The settings page (page.featpkg.php, menu item from module.xml) calls
 * ajax.php?module=featpkg&command=<action>: ajaxRequest() admits the
 * whitelisted actions only, ajaxHandler() hands them to Lib/FeatpkgPage.php,
 * which runs featpkg. Its data (the saved parameters and the features
 * installed after the page's last change, which install() passes to featpkg,
 * and the jobs) lives in <ASTVARLIBDIR>/featpkg-page, which survives module
 * upgrades (FreePBX replaces the module directory).
 */

namespace FreePBX\modules;

require_once __DIR__ . '/Lib/FeatpkgRunner.php';
require_once __DIR__ . '/Lib/FeatpkgPage.php';

use Modules\ModuleFeatpkg\Lib\FeatpkgPage;
use Modules\ModuleFeatpkg\Lib\FeatpkgPageError;
use Modules\ModuleFeatpkg\Lib\FeatpkgRunner;

class Featpkg extends \FreePBX_Helpers implements \BMO
{
    /** @var mixed the FreePBX object */
    public $FreePBX;

    public function __construct($freepbx = null)
    {
        $this->FreePBX = $freepbx;
    }

    /**
     * Installs the features, and on every upgrade or reinstall brings them to
     * this module's version (featpkg install is idempotent: "up to date").
     */
    public function install()
    {
        $this->runner()->freepbxInstall();
    }

    /** Takes exactly featpkg's changes back out (nothing when not installed). */
    public function uninstall()
    {
        $this->runner()->freepbxUninstall();
    }

    /**
     * Nothing to add to a FreePBX backup: featpkg keeps its own state (under
     * the Asterisk var/lib directory) and install() rebuilds the features.
     */
    public function backup()
    {
        return [];
    }

    public function restore($backup)
    {
    }

    /**
     * FreePBX's chown hook (framework Console/Chown.class.php, for `fwconsole
     * chown` and `fwconsole chown --module featpkg`, which `fwconsole ma
     * install` runs as root after install()): the settings page runs featpkg
     * as the web user (asterisk), while install() runs it as root, so
     * featpkg's state directory (state.db, lock, machine.key, journal/) and
     * the page's data directory must belong to the web user; FreePBX's own
     * chown does not cover ASTVARLIBDIR as a whole. `rdir`: the directory and
     * every directory below 0700, files 0600: only the
     * web user reads them (machine.key is a secret, the params may hold some).
     *
     * @return array<int, array{type: string, path: string, perms: int}>
     */
    public function chownFreepbx()
    {
        $astVarLibDir = $this->config('ASTVARLIBDIR');
        return [
            ['type' => 'rdir', 'path' => FeatpkgRunner::freepbxStateDirFor($astVarLibDir), 'perms' => 0700],
            ['type' => 'rdir', 'path' => FeatpkgRunner::freepbxDataDirFor($astVarLibDir), 'perms' => 0700],
        ];
    }

    /** Nothing is posted to the page itself: it talks to ajaxHandler(). */
    public function doConfigPageInit($page)
    {
    }

    /** FreePBX's Ajax asks first: only the settings page's actions are admitted (authenticated, same-host Referer: FreePBX's defaults). */
    public function ajaxRequest($req, &$setting)
    {
        return is_string($req) && in_array($req, FeatpkgPage::ACTIONS, true);
    }

    /**
     * One settings page request: `['status' => true, 'data' => payload]`, or
     * `['status' => false, 'message' => …, 'code' => 400|409|500]` with that
     * HTTP status.
     *
     * @return array<string, mixed>
     */
    public function ajaxHandler()
    {
        $command = isset($_REQUEST['command']) && is_string($_REQUEST['command']) ? $_REQUEST['command'] : '';
        $fields = array_merge(is_array($_REQUEST ?? null) ? $_REQUEST : [], is_array($_POST ?? null) ? $_POST : []);
        $method = isset($_SERVER['REQUEST_METHOD']) && is_string($_SERVER['REQUEST_METHOD']) ? $_SERVER['REQUEST_METHOD'] : '';
        try {
            $runner = $this->runner();
            $page = new FeatpkgPage($runner, 'freepbx', $runner->freepbxDataDir(), ['--target', 'freepbx'], $this->language());
            return ['status' => true, 'data' => $page->handle($command, $fields, $method)];
        } catch (FeatpkgPageError $e) {
            return $this->ajaxFailure($e->status(), $e->getMessage());
        } catch (\Throwable $e) {
            return $this->ajaxFailure(500, $e->getMessage());
        }
    }

    /** @return array{status: false, message: string, code: int} */
    private function ajaxFailure(int $status, string $message): array
    {
        http_response_code($status);
        // FreePBX's Ajax::doRequest sends "HTTP/1.1 200 OK" after
        // ajaxHandler() returns; this runs after it, as the headers go out.
        header_register_callback(static function () use ($status) {
            $reasons = [400 => 'Bad Request', 409 => 'Conflict', 500 => 'Internal Server Error'];
            $protocol = isset($_SERVER['SERVER_PROTOCOL']) && preg_match('~^HTTP/\d(\.\d)?$~', (string) $_SERVER['SERVER_PROTOCOL'])
                ? $_SERVER['SERVER_PROTOCOL'] : 'HTTP/1.1';
            header(sprintf('%s %d %s', $protocol, $status, $reasons[$status] ?? 'Error'), true, $status);
        });
        if ($status >= 500 && function_exists('freepbx_log') && defined('FPBX_LOG_ERROR')) {
            freepbx_log(FPBX_LOG_ERROR, "featpkg settings page: $message");
        }
        return ['status' => false, 'message' => $message, 'code' => $status];
    }

    private function runner(): FeatpkgRunner
    {
        return new FeatpkgRunner(__DIR__, null, FeatpkgRunner::freepbxDataDirFor($this->config('ASTVARLIBDIR')));
    }

    /** A FreePBX setting (Advanced Settings / amportal.conf), null when unknown. */
    private function config(string $key): ?string
    {
        $freepbx = $this->FreePBX;
        // FreePBX's object loads Config on first use (__get).
        if (!is_object($freepbx) || !(property_exists($freepbx, 'Config') || method_exists($freepbx, '__get'))) {
            return null;
        }
        try {
            $config = $freepbx->Config;
            $value = is_object($config) && method_exists($config, 'get') ? $config->get($key) : null;
        } catch (\Throwable $e) {
            return null;
        }
        return is_string($value) && trim($value) !== '' ? trim($value) : null;
    }

    /** The admin's language: FreePBX's `lang` cookie, else UIDEFAULTLANG, else "". */
    private function language(): string
    {
        $pattern = '/^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$/';
        $cookie = isset($_COOKIE['lang']) && is_string($_COOKIE['lang']) ? $_COOKIE['lang'] : '';
        if (preg_match($pattern, $cookie)) {
            return $cookie;
        }
        $default = $this->config('UIDEFAULTLANG');
        return $default !== null && preg_match($pattern, $default) ? $default : '';
    }
}
