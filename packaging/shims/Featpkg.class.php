<?php
/*
 * FreePBX BMO class of the featpkg module (rawname featpkg). The module
 * directory is the extracted bundle; install() hands it to the bundled featpkg
 * (FreePBX/framework BMO.interface.php: an exception thrown from install()
 * leaves the module not installed, one from uninstall() is shown as a warning).
 * featpkg runs `fwconsole reload` itself.
 */

namespace FreePBX\modules;

require_once __DIR__ . '/Lib/FeatpkgRunner.php';

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

    /** The module ships no page. */
    public function doConfigPageInit($page)
    {
    }

    private function runner(): FeatpkgRunner
    {
        return new FeatpkgRunner(__DIR__);
    }
}
