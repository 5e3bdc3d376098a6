<?php
/*
 * MikoPBX hook class of the featpkg module (class name: the module id without
 * "Module", plus "Conf"). Enabling the module installs the bundle's features
 * with the bundled featpkg; disabling takes them back out.
 *
 * Why these hooks (mikopbx/Core src/Modules/PbxExtensionState.php):
 * - onBeforeModuleEnable/onBeforeModuleDisable are called first inside the
 *   enable/disable check (makeBeforeEnableTest / makeBeforeDisableTest). There,
 *   returning false refuses the enable/disable and MikoPBX shows getMessages()
 *   to the admin. The check runs in an open transaction on the main database
 *   (the enable check has already saved the module row in it), so writing the
 *   configuration from there could wait on MikoPBX's own lock: these hooks run
 *   featpkg with --dry-run, which checks everything (parameters, collisions,
 *   the restart rule) and writes nothing. Both are called a second time after
 *   the check; a second dry run is harmless.
 * - onAfterModuleEnable/onAfterModuleDisable do the real work. MikoPBX has
 *   already saved the module's new state (disabled='0' or '1') when it calls
 *   them, and nothing catches what they throw (an exception would leave the
 *   REST call unanswered). So a failure puts the module's row back the way
 *   featpkg's state is: a failed install leaves the module disabled, with
 *   disableReason DisabledByException and featpkg's message as the reason
 *   text (shown in the module list, and logged); a failed uninstall leaves it
 *   enabled. featpkg rolls its own transaction back on failure, so nothing is
 *   left half-installed.
 * - ReloadModuleStateAction (WorkerModelsEvents) calls the same After hook
 *   again a few seconds later, in another process. featpkg waits for the
 *   first run's lock (FeatpkgRunner::LOCK_WAIT) and then finds the features
 *   up to date, or, after a failure, not installed: it does nothing.
 * - generateModulesConf() hands MikoPBX's modules.conf generator the `load =>`
 *   lines featpkg wrote into the module's db/hooks/generateModulesConf.conf
 *   (featpkg owns that file: planned, journalled, verified, rolled back like
 *   any other). MikoPBX calls it only while the module is enabled.
 */

namespace Modules\ModuleFeatpkg\Lib;

use MikoPBX\Common\Models\PbxExtensionModules;
use MikoPBX\Core\System\SystemMessages;
use MikoPBX\Modules\Config\ConfigClass;
use Throwable;

class FeatpkgConf extends ConfigClass
{
    /** Checks that featpkg can install the features; refuses the enable (with featpkg's message) otherwise. */
    public function onBeforeModuleEnable(): bool
    {
        try {
            $this->runner()->mikopbxInstall(true);
            return true;
        } catch (Throwable $e) {
            $this->refuse($e);
            return false;
        }
    }

    /** Installs the features; on failure the module goes back to disabled, with featpkg's message. */
    public function onAfterModuleEnable(): void
    {
        try {
            $this->runner()->mikopbxInstall(false);
        } catch (Throwable $e) {
            $this->failure($e);
            $this->setModuleRow('1', 'DisabledByException', $e->getMessage());
        }
    }

    /** Checks that featpkg can take the features out; refuses the disable (with featpkg's message) otherwise. */
    public function onBeforeModuleDisable(): bool
    {
        try {
            $this->runner()->mikopbxUninstall(true);
            return true;
        } catch (Throwable $e) {
            $this->refuse($e);
            return false;
        }
    }

    /** Uninstalls the features (restoring exactly what featpkg changed); on failure the module stays enabled. */
    public function onAfterModuleDisable(): void
    {
        try {
            $this->runner()->mikopbxUninstall(false);
        } catch (Throwable $e) {
            $this->failure($e);
            $this->setModuleRow('0', '', '');
        }
    }

    /** modules.conf: the `load =>` lines of the installed features (empty when none). */
    public function generateModulesConf(): string
    {
        $text = @file_get_contents($this->runner()->moduleDir() . '/' . FeatpkgRunner::MIKOPBX_MODULES_HOOK);
        return $text === false ? '' : $text;
    }

    private function runner(): FeatpkgRunner
    {
        return new FeatpkgRunner(dirname(__DIR__));
    }

    private function refuse(Throwable $e): void
    {
        $this->messages['error'][] = $e->getMessage();
        self::log($e->getMessage());
    }

    private function failure(Throwable $e): void
    {
        $this->messages['error'][] = $e->getMessage();
        self::log($e->getMessage());
    }

    /**
     * Puts the module's row in m_PbxExtensionModules to `$disabled` (what
     * featpkg's state says after a failed install or uninstall), with the reason.
     */
    private function setModuleRow(string $disabled, string $reason, string $reasonText): void
    {
        try {
            $module = PbxExtensionModules::findFirstByUniqid($this->moduleUniqueId);
            if ($module === null) {
                return;
            }
            $module->disabled = $disabled;
            $module->disableReason = $reason;
            $module->disableReasonText = $reasonText;
            if ($module->save() === false) {
                self::log('could not save the module state: ' . implode('; ', array_map('strval', $module->getMessages())));
            }
        } catch (Throwable $e) {
            self::log('could not save the module state: ' . $e->getMessage());
        }
    }

    /** Logs an error the way MikoPBX modules do (syslog through SystemMessages). */
    public static function log(string $message): void
    {
        if (class_exists(SystemMessages::class)) {
            SystemMessages::sysLogMsg('ModuleFeatpkg', $message, LOG_ERR);
        } elseif (is_callable(['MikoPBX\Core\System\Util', 'sysLogMsg'])) {
            call_user_func(['MikoPBX\Core\System\Util', 'sysLogMsg'], 'ModuleFeatpkg', $message, LOG_ERR);
        } else {
            error_log("ModuleFeatpkg: $message");
        }
    }
}
